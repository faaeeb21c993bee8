"""The report's chart (chart.png): p95 over time with the user count, and the queue.

Drawn with matplotlib in the load generator's image (its only home: the project's
.venv does not carry it); the series come from the report's own readers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from .report import HistoryPoint


def draw(
    path: Path,
    history: list[HistoryPoint],
    queue: list[tuple[float, int, int]],
    started: float,
    title: str,
) -> None:
    figure, (latency, waiting) = plt.subplots(
        2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    seconds = [p.at - started for p in history]
    latency.plot(
        seconds,
        [p.p95_ms if p.p95_ms is not None else float("nan") for p in history],
        color="tab:red",
        label="p95, every request, last 10 s (ms)",
    )
    latency.set_ylabel("p95 (ms)")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    users = latency.twinx()
    users.plot(seconds, [p.users for p in history], color="tab:blue", label="users")
    users.set_ylabel("users")
    users.set_ylim(bottom=0)
    lines = latency.get_legend_handles_labels()
    more = users.get_legend_handles_labels()
    latency.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    latency.set_title(title)

    at = [s[0] - started for s in queue]
    waiting.plot(at, [s[1] for s in queue], color="tab:orange", label="jobs waiting")
    waiting.plot(at, [s[2] for s in queue], color="tab:green", label="jobs active")
    waiting.set_ylabel("queue (jobs)")
    waiting.set_xlabel("seconds since the start")
    waiting.set_ylim(bottom=0)
    waiting.grid(alpha=0.3)
    waiting.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
