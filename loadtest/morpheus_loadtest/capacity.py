"""The capacity search: more users step by step until the platform stops holding.

Each step raises the user count (the steps given, and with a maximum, on by their last
increment), waits until the new users have started and settled,
then measures for a fixed time. A step holds while the API's p95 stays within
:attr:`Thresholds.api_p95_ms` and errors (429s apart: they are counted on their own)
within :attr:`Thresholds.error_ratio` of the step's requests. The search stops at the
first step that does not hold, or after the last step the run can have (one client
address and one API key per user), and names the highest count that held.

:class:`CapacitySearch` is the step logic alone, driven by the time and the run's
cumulative figures it is handed: the Locust load shape in loadtest/locustfile.py
feeds it, the unit tests feed it made-up figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from .errors import LoadTestError
from .histograms import Histogram, percentile, subtract

DEFAULT_STEPS = (100, 150, 200, 300, 400)


def step_counts(steps: Sequence[int], ceiling: int, maximum: int | None = None) -> list[int]:
    """The user counts to try: `steps` (increasing), and with a `maximum`, on by their last
    increment up to it. None past `ceiling`, the most users the run can have (its free
    addresses): a step beyond it becomes the ceiling, so that the search ends there."""
    if not steps:
        raise LoadTestError("no capacity steps given", "give at least one, e.g. --steps 100,150.")
    if any(n < 1 for n in steps) or any(b <= a for a, b in pairwise(steps)):
        raise LoadTestError(
            f"capacity steps {','.join(map(str, steps))} do not increase from 1 up",
            "give increasing user counts, e.g. --steps 100,150,200,300,400.",
        )
    if maximum is not None and maximum < 1:
        raise LoadTestError(f"--max-users {maximum} is below 1", "give 1 or more.")
    counts = list(steps)
    if maximum is not None:
        increment = steps[-1] - steps[-2] if len(steps) > 1 else steps[0]
        while counts[-1] + increment <= maximum:
            counts.append(counts[-1] + increment)
        if counts[-1] < maximum:
            counts.append(maximum)
        ceiling = min(ceiling, maximum)
    if ceiling < counts[0]:
        raise LoadTestError(
            f"the first capacity step needs {counts[0]} users and the run can have {ceiling}",
            f"start lower (--steps {ceiling},...), or give the run more addresses or users.",
        )
    within = [n for n in counts if n < ceiling]
    return [*within, ceiling] if len(within) < len(counts) else within


def address_shortfall(
    steps: Sequence[int], free: int, network: str, maximum: int | None = None
) -> str | None:
    """What a search asked for more users than `network` has free client addresses
    cannot do, said before it starts (None when every step fits): it ends at `free`,
    one address per user, whether or not the platform would hold more."""
    wanted = maximum if maximum is not None else max(steps, default=0)
    if wanted <= free:
        return None
    return (
        f"the capacity search was asked for up to {wanted} users, and {network} has {free} "
        f"free client addresses (one per user): it will end at {free} users at most, "
        "whether or not the platform holds more; a larger network (--network) gives it room"
    )


@dataclass(frozen=True)
class Thresholds:
    api_p95_ms: float = 2000.0
    error_ratio: float = 0.01


@dataclass(frozen=True)
class Totals:
    """The run's cumulative figures at one moment (Locust's counters since the start)."""

    requests: int = 0
    errors: int = 0  # failed requests, 429s excluded
    limited: int = 0  # 429s
    api: Histogram = field(default_factory=dict)  # every API request's response times


@dataclass(frozen=True)
class StepResult:
    users: int
    seconds: float
    requests: int
    errors: int
    limited: int
    api_requests: int
    api_p95_ms: int | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def failure(self, thresholds: Thresholds) -> str | None:
        """Why the step did not hold, or None when it held."""
        if self.requests == 0:
            return "no request was answered"
        if self.api_p95_ms is None:
            return "no API request was answered"
        if self.api_p95_ms > thresholds.api_p95_ms:
            return f"API p95 {self.api_p95_ms} ms > {thresholds.api_p95_ms:.0f} ms"
        if self.error_ratio > thresholds.error_ratio:
            return (
                f"errors {self.error_ratio:.1%} of {self.requests} requests "
                f"> {thresholds.error_ratio:.1%}"
            )
        return None

    def as_dict(self, thresholds: Thresholds) -> dict:
        failure = self.failure(thresholds)
        return {
            "users": self.users,
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "errors": self.errors,
            "error_ratio": round(self.error_ratio, 4),
            "limited": self.limited,
            "api_requests": self.api_requests,
            "api_p95_ms": self.api_p95_ms,
            "held": failure is None,
            "failure": failure,
        }


def step_result(users: int, seconds: float, start: Totals, end: Totals) -> StepResult:
    api = subtract(end.api, start.api)
    return StepResult(
        users=users,
        seconds=seconds,
        requests=end.requests - start.requests,
        errors=end.errors - start.errors,
        limited=end.limited - start.limited,
        api_requests=sum(api.values()),
        api_p95_ms=percentile(api, 0.95),
    )


@dataclass
class CapacitySearch:
    """The steps' state machine. `tick(now)` answers Locust's LoadTestShape.tick: the
    (user count, spawn rate) to have now, or None once the search has ended."""

    counts: list[int]
    spawn_rate: float
    measure_seconds: float
    totals: Callable[[], Totals]
    settle_seconds: float = 10.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    results: list[StepResult] = field(default_factory=list)
    ended: str | None = None  # why the search ended
    _step: int = -1
    _measure_from: float = 0.0
    _measure_until: float = 0.0
    _start: Totals | None = None

    def __post_init__(self) -> None:
        if not self.counts:
            raise LoadTestError("a capacity search needs steps", "give at least one.")
        if self.spawn_rate <= 0 or self.measure_seconds <= 0 or self.settle_seconds < 0:
            raise LoadTestError(
                "the spawn rate and step time must be above 0",
                "check --spawn-rate and --step-duration.",
            )

    def _begin(self, step: int, now: float) -> None:
        previous = self.counts[step - 1] if step > 0 else 0
        ramp = (self.counts[step] - previous) / self.spawn_rate
        self._step = step
        self._measure_from = now + ramp + self.settle_seconds
        self._measure_until = self._measure_from + self.measure_seconds
        self._start = None

    def tick(self, now: float) -> tuple[int, float] | None:
        if self.ended is not None:
            return None
        if self._step < 0:
            self._begin(0, now)
        if self._start is None and now >= self._measure_from:
            self._start = self.totals()
            self._measure_from = now
            self._measure_until = now + self.measure_seconds
        if self._start is not None and now >= self._measure_until:
            result = step_result(
                self.counts[self._step], now - self._measure_from, self._start, self.totals()
            )
            self.results.append(result)
            failure = result.failure(self.thresholds)
            if failure is not None:
                self.ended = f"{result.users} users did not hold: {failure}"
                return None
            if self._step + 1 == len(self.counts):
                self.ended = f"{result.users} users held, the most this run can have"
                return None
            self._begin(self._step + 1, now)
        return self.counts[self._step], self.spawn_rate

    @property
    def held(self) -> int | None:
        """The highest user count that held (None: not even the first step)."""
        held = [r.users for r in self.results if r.failure(self.thresholds) is None]
        return max(held) if held else None

    def as_dict(self) -> dict:
        return {
            "steps": [r.as_dict(self.thresholds) for r in self.results],
            "planned": self.counts,
            "held": self.held,
            "ended": self.ended or "the run ended before the search did",
            "thresholds": {
                "api_p95_ms": self.thresholds.api_p95_ms,
                "error_ratio": self.thresholds.error_ratio,
            },
        }
