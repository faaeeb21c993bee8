"""The run's report, from what Locust and the run wrote into the results folder.

Inputs (file names as the generator writes them):

- ``final_stats.csv`` (Locust's ``_stats.csv``, written once more when every user has
  stopped): per endpoint (Locust's request name is the site and the route template,
  e.g. ``api /v1/comics/{comic_id}``) its count, failures, p50/p95/p99 and throughput;
- ``final_failures.csv`` (Locust's ``_failures.csv``, likewise): failures by endpoint and
  message. A 429 is recorded with the message :data:`RATE_LIMITED` (the locustfile's
  client does so), so 429s are counted on their own and are not errors;
- ``locust_stats_history.csv`` (``--csv-full-history``): every second, the user count
  and the p95 of the last 10 s, for the chart;
- ``histograms.json``: each endpoint's response-time histogram, for the figures of a
  group of endpoints (every API request, every page);
- ``comics.json``: each comic submitted, when, and when it was seen finished;
- ``queue.csv``: the queue's waiting and active jobs, sampled from /metrics.

Everything here is pure: file contents in, plain data out (``report.json``,
``report.md`` and the summary line).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .histograms import merge, normalise, percentile

RATE_LIMITED = "429 Too Many Requests"
# The sites, as the first word of each request name.
API_SITES = ("api",)
PAGE_SITES = ("storefront", "dashboard")
FINAL_STATUSES = ("completed", "failed", "cancelled")


def _number(value: str) -> float | None:
    value = (value or "").strip()
    if value in ("", "N/A"):
        return None
    return float(value)


def _ms(value: str) -> int | None:
    number = _number(value)
    return None if number is None else round(number)


def site_of(name: str) -> str:
    return name.split(" ", 1)[0]


@dataclass(frozen=True)
class Endpoint:
    method: str
    name: str
    requests: int
    failures: int
    limited: int
    p50_ms: int | None
    p95_ms: int | None
    p99_ms: int | None
    rps: float

    @property
    def errors(self) -> int:
        return self.failures - self.limited

    def as_dict(self) -> dict:
        return {**asdict(self), "errors": self.errors, "rps": round(self.rps, 2)}


def read_failures(text: str) -> dict[tuple[str, str], int]:
    """429s per (method, name) from a Locust failures CSV file."""
    limited: dict[tuple[str, str], int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if RATE_LIMITED in row.get("Error", ""):
            key = (row["Method"], row["Name"])
            limited[key] = limited.get(key, 0) + int(row["Occurrences"])
    return limited


def other_failures(text: str) -> list[dict]:
    """Failures that are not 429s, most frequent first."""
    rows = [
        {
            "method": row["Method"],
            "name": row["Name"],
            "error": row["Error"],
            "occurrences": int(row["Occurrences"]),
        }
        for row in csv.DictReader(io.StringIO(text))
        if RATE_LIMITED not in row.get("Error", "")
    ]
    return sorted(rows, key=lambda r: -r["occurrences"])


def read_stats(stats_text: str, failures_text: str = "") -> tuple[list[Endpoint], Endpoint]:
    """(every endpoint, the aggregate) from Locust's stats and failures CSV files."""
    limited = read_failures(failures_text) if failures_text else {}
    endpoints, total = [], None
    for row in csv.DictReader(io.StringIO(stats_text)):
        method, name = row["Type"], row["Name"]
        aggregated = name == "Aggregated"
        found = Endpoint(
            method=method,
            name=name,
            requests=int(row["Request Count"]),
            failures=int(row["Failure Count"]),
            limited=sum(limited.values()) if aggregated else limited.get((method, name), 0),
            p50_ms=_ms(row["50%"]),
            p95_ms=_ms(row["95%"]),
            p99_ms=_ms(row["99%"]),
            rps=_number(row["Requests/s"]) or 0.0,
        )
        if aggregated:
            total = found
        else:
            endpoints.append(found)
    if total is None:
        raise ValueError("no Aggregated row: is this Locust's stats CSV file?")
    return sorted(endpoints, key=lambda e: (e.name, e.method)), total


@dataclass(frozen=True)
class HistoryPoint:
    at: float  # epoch seconds
    users: int
    p95_ms: int | None  # of the last 10 s, every request
    rps: float


def read_history(text: str) -> list[HistoryPoint]:
    """The Aggregated rows of locust_stats_history.csv, oldest first."""
    points = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("Name") != "Aggregated":
            continue
        points.append(
            HistoryPoint(
                at=float(row["Timestamp"]),
                users=int(row["User Count"]),
                p95_ms=_ms(row["95%"]),
                rps=_number(row["Requests/s"]) or 0.0,
            )
        )
    return sorted(points, key=lambda p: p.at)


def group_figures(
    histograms: Mapping[str, Mapping], endpoints: Iterable[Endpoint], sites: tuple[str, ...]
) -> dict:
    """Requests, errors, 429s and p50/p95/p99 over every endpoint of `sites`."""
    chosen = [e for e in endpoints if site_of(e.name) in sites]
    names = {f"{e.method} {e.name}" for e in chosen}
    merged = merge(normalise(h["response_times"]) for key, h in histograms.items() if key in names)
    return {
        "requests": sum(e.requests for e in chosen),
        "errors": sum(e.errors for e in chosen),
        "limited": sum(e.limited for e in chosen),
        "p50_ms": percentile(merged, 0.50),
        "p95_ms": percentile(merged, 0.95),
        "p99_ms": percentile(merged, 0.99),
    }


def read_queue(text: str) -> list[tuple[float, int, int]]:
    """(epoch seconds, waiting, active) rows of queue.csv."""
    return [
        (float(row["at"]), int(row["waiting"]), int(row["active"]))
        for row in csv.DictReader(io.StringIO(text))
    ]


def queue_figures(samples: list[tuple[float, int, int]], started: float) -> dict:
    if not samples:
        return {"samples": [], "max_waiting": None, "max_waiting_at_s": None, "last_waiting": None}
    peak = max(samples, key=lambda s: s[1])
    return {
        "samples": [[round(at - started, 1), waiting, active] for at, waiting, active in samples],
        "max_waiting": peak[1],
        "max_waiting_at_s": round(peak[0] - started, 1),
        "last_waiting": samples[-1][1],
    }


def drawing_figures(
    history: list[HistoryPoint], samples: list[tuple[float, int, int]]
) -> dict[str, dict]:
    """Every request's p95 of the last 10 s, a point a second of the load, split by what
    the workers did then (the queue's latest sample: jobs active or none): what the
    requests pay for the comics drawn beside them on the same machine."""
    ordered = sorted(samples)
    times = [at for at, _, _ in ordered]
    split: dict[str, list[float]] = {"drawing": [], "idle": []}
    for point in history:
        latest = bisect.bisect_right(times, point.at) - 1
        if point.p95_ms is None or point.users == 0 or latest < 0:
            continue
        split["drawing" if ordered[latest][2] > 0 else "idle"].append(point.p95_ms)
    return {
        name: {
            "seconds": len(values),
            "median_ms": _quantile(values, 0.5),
            "max_ms": max(values, default=None),
        }
        for name, values in split.items()
    }


def _quantile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank quantile of a few values (the comics' times)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def comic_figures(comics: list[dict], started: float) -> dict:
    """How the submitted comics fared. `done_in_s`: from the run's start until the last
    of them was seen finished (None while any is unfinished); turnaround: from each
    one's submission until it was seen finished."""
    finished = [c for c in comics if c.get("status") in FINAL_STATUSES and c.get("finished_at")]
    turnaround = [c["finished_at"] - c["submitted_at"] for c in finished]
    unfinished = len(comics) - len(finished)
    last = max((c["finished_at"] for c in finished), default=None)
    by_way: dict[str, int] = {}
    for comic in comics:
        by_way[comic.get("via", "?")] = by_way.get(comic.get("via", "?"), 0) + 1

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "submitted": len(comics),
        "completed": sum(1 for c in finished if c["status"] == "completed"),
        "failed": sum(1 for c in finished if c["status"] != "completed"),
        "unfinished": unfinished,
        "by_way": by_way,
        "done_in_s": rounded(last - started) if last is not None and not unfinished else None,
        "last_finished_s": rounded(last - started) if last is not None else None,
        "turnaround_p50_s": rounded(_quantile(turnaround, 0.50)),
        "turnaround_p95_s": rounded(_quantile(turnaround, 0.95)),
        "turnaround_max_s": rounded(max(turnaround, default=None)),
    }


def build_report(
    *,
    users: int,
    seconds: float,
    started: float,
    stats_text: str,
    failures_text: str,
    histograms: Mapping[str, Mapping],
    comics: list[dict],
    queue_text: str = "",
    history: list[HistoryPoint] | None = None,
    capacity: dict | None = None,
) -> dict:
    endpoints, total = read_stats(stats_text, failures_text)
    samples = read_queue(queue_text) if queue_text else []
    report = {
        "users": users,
        "seconds": round(seconds),
        "started": started,
        "endpoints": [e.as_dict() for e in endpoints],
        "total": total.as_dict(),
        "groups": {
            "api": group_figures(histograms, endpoints, API_SITES),
            "pages": group_figures(histograms, endpoints, PAGE_SITES),
        },
        "errors": other_failures(failures_text)[:20] if failures_text else [],
        "queue": queue_figures(samples, started),
        "drawing": drawing_figures(history or [], samples),
        "comics": comic_figures(comics, started),
    }
    if capacity is not None:
        report["capacity"] = capacity
    report["summary"] = summary_line(report)
    return report


def _ms_text(value: int | None) -> str:
    return "n/a" if value is None else f"{value} ms"


def comics_text(comics: dict) -> str:
    if comics["submitted"] == 0:
        return "no comics submitted"
    done = comics["completed"]
    if comics["unfinished"] == 0 and comics["failed"] == 0:
        return f"{done} comics done in {comics['done_in_s']:.0f} s"
    text = f"{done} of {comics['submitted']} comics done"
    extra = []
    if comics["failed"]:
        extra.append(f"{comics['failed']} failed")
    if comics["unfinished"]:
        extra.append(f"{comics['unfinished']} unfinished")
    return f"{text} ({', '.join(extra)})"


def summary_line(report: dict) -> str:
    groups = report["groups"]
    total = report["total"]
    line = (
        f"loadtest: {report['users']} users, {report['seconds']} s, "
        f"API p95 {_ms_text(groups['api']['p95_ms'])}, "
        f"pages p95 {_ms_text(groups['pages']['p95_ms'])}, "
        f"{total['errors']} errors, {total['limited']} 429s, {comics_text(report['comics'])}"
    )
    capacity = report.get("capacity")
    if capacity is not None:
        held = capacity.get("held")
        line += f"; capacity: {'none held' if held is None else f'{held} users held'}"
        if (text := bare_text(capacity)) is not None:
            line += f"; {text}"
    return line


def bare_text(capacity: dict) -> str | None:
    """The bare service's ceiling beside the requests per second of the last step held."""
    found = capacity.get("bare")
    if not found:
        return None
    text = f"the bare service {found['per_second']} req/s at /health/live"
    held = [step for step in capacity.get("steps", []) if step.get("held")]
    if held and held[-1].get("seconds") and found["per_second"]:
        rate = held[-1]["requests"] / held[-1]["seconds"]
        text += f" (the mix at {held[-1]['users']} users: {rate:.0f} req/s, "
        text += f"{rate / found['per_second']:.1%} of it)"
    return text


def markdown(report: dict) -> str:
    """report.md: the summary, then a table per part."""
    lines = [
        "# Load test report",
        "",
        report["summary"],
        "",
        "## Endpoints",
        "",
        "| method | endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | errors | 429s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in [*report["endpoints"], report["total"]]:
        lines.append(
            f"| {e['method'] or ''} | {e['name']} | {e['requests']} | {e['rps']} | "
            f"{_cell(e['p50_ms'])} | {_cell(e['p95_ms'])} | {_cell(e['p99_ms'])} | "
            f"{e['errors']} | {e['limited']} |"
        )
    lines += [
        "",
        "## Groups",
        "",
        "| group | requests | p50 ms | p95 ms | p99 ms | errors | 429s |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, g in report["groups"].items():
        lines.append(
            f"| {name} | {g['requests']} | {_cell(g['p50_ms'])} | {_cell(g['p95_ms'])} | "
            f"{_cell(g['p99_ms'])} | {g['errors']} | {g['limited']} |"
        )
    comics = report["comics"]
    queue = report["queue"]
    lines += [
        "",
        "## Comics and the queue",
        "",
        f"- submitted: {comics['submitted']} ({_ways(comics['by_way'])}); completed "
        f"{comics['completed']}, failed {comics['failed']}, unfinished {comics['unfinished']}",
        f"- the last one finished {_seconds(comics['last_finished_s'])} after the start; "
        f"from submission to finish: p50 {_seconds(comics['turnaround_p50_s'])}, "
        f"p95 {_seconds(comics['turnaround_p95_s'])}, max {_seconds(comics['turnaround_max_s'])}",
        f"- jobs waiting: at most {_cell(queue['max_waiting'])} "
        f"({_seconds(queue['max_waiting_at_s'])} after the start), "
        f"{_cell(queue['last_waiting'])} at the last sample; every sample is in queue.csv",
    ]
    drawing, idle = report["drawing"]["drawing"], report["drawing"]["idle"]
    if drawing["seconds"] or idle["seconds"]:
        lines.append(
            "- every request's p95 of the last 10 s, a point a second: while the workers "
            f"drew ({drawing['seconds']} s) median {_cell(drawing['median_ms'])} ms, at most "
            f"{_cell(drawing['max_ms'])} ms; with no job drawing ({idle['seconds']} s) "
            f"median {_cell(idle['median_ms'])} ms, at most {_cell(idle['max_ms'])} ms"
        )
    if report["errors"]:
        lines += ["", "## Errors (429s apart)", "", "| method | endpoint | error | count |"]
        lines.append("|---|---|---|--:|")
        for row in report["errors"]:
            error = row["error"].replace("|", "/")[:160]
            lines.append(f"| {row['method']} | {row['name']} | {error} | {row['occurrences']} |")
    capacity = report.get("capacity")
    if capacity is not None:
        lines += [
            "",
            "## Capacity search",
            "",
            f"Held: {capacity['held'] if capacity['held'] is not None else 'none'}. "
            f"{capacity['ended']}.",
            "",
            "| users | seconds | requests | API p95 ms | errors | 429s | held |",
            "|--:|--:|--:|--:|--:|--:|---|",
        ]
        for step in capacity["steps"]:
            lines.append(
                f"| {step['users']} | {step['seconds']} | {step['requests']} | "
                f"{_cell(step['api_p95_ms'])} | {step['errors']} | {step['limited']} | "
                f"{'yes' if step['held'] else 'no: ' + step['failure']} |"
            )
        if found := capacity.get("bare"):
            lines += [
                "",
                f"The bare service on the same machine, after the search: {found['url']}, "
                f"{found['connections']} keep-alive connections for {found['seconds']} s, "
                f"{found['per_second']} req/s answered, p50 {_cell(found['p50_ms'])} ms, "
                f"p95 {_cell(found['p95_ms'])} ms, {found['failed']} failed "
                "(no edge, TLS, database or queue: the most this machine gives the "
                "service with the load generator beside it).",
            ]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return "n/a" if value is None else str(value)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} s"


def _ways(by_way: dict[str, int]) -> str:
    names = {"form": "through the storefront's form", "api": "through the API"}
    return ", ".join(f"{n} {names.get(way, way)}" for way, n in sorted(by_way.items())) or "none"


def write_report(results: Path, report: dict) -> None:
    (results / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (results / "report.md").write_text(markdown(report))
    (results / "summary.txt").write_text(report["summary"] + "\n")
