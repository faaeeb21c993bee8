"""Response-time histograms as Locust keeps them: {rounded milliseconds: count}.

Percentiles cannot be averaged, so figures over several endpoints (every API request,
every page) or over a stretch of the run (a capacity step) are computed from merged or
subtracted histograms, with the rule Locust uses for its own percentiles: the figures
agree with the per-endpoint ones of its report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

Histogram = Mapping[int, int]


def normalise(histogram: Mapping[str | int, int]) -> dict[int, int]:
    """A histogram read from JSON (string keys) as ints; empty buckets dropped."""
    return {int(ms): int(count) for ms, count in histogram.items() if int(count) > 0}


def merge(histograms: Iterable[Histogram]) -> dict[int, int]:
    total: Counter[int] = Counter()
    for histogram in histograms:
        total.update(histogram)
    return {ms: count for ms, count in total.items() if count > 0}


def subtract(after: Histogram, before: Histogram) -> dict[int, int]:
    """What `after` counted since `before` (a snapshot of the same counts, earlier)."""
    for ms, count in before.items():
        if after.get(ms, 0) < count:
            raise ValueError(f"{ms} ms: {count} before but {after.get(ms, 0)} after")
    return {
        ms: count - before.get(ms, 0) for ms, count in after.items() if count > before.get(ms, 0)
    }


def percentile(histogram: Histogram, fraction: float) -> int | None:
    """The response time under which `fraction` of the requests fell (None: no requests).

    Locust's rule (locust.stats.calculate_response_time_percentile): walk the buckets
    from the slowest down until what is left is no more than `fraction` of the total.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction} is not between 0 and 1")
    total = sum(histogram.values())
    if total == 0:
        return None
    within = int(total * fraction)
    processed = 0
    for ms in sorted(histogram, reverse=True):
        processed += histogram[ms]
        if total - processed <= within:
            return ms
    return 0  # not reached: the loop ends with processed == total
