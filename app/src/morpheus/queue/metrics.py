"""Prometheus gauges of the comic queue: ``morpheus_queue_jobs{state=...}``."""

from __future__ import annotations

from prometheus_client import Gauge

from morpheus.queue.client import queue_counts
from morpheus.settings import Settings

QUEUE_JOBS = Gauge(
    "morpheus_queue_jobs",
    "Jobs in the comic queue by BullMQ state, as last read from Redis.",
    ["state"],
    # Under Gunicorn each worker process exports its own sample; keep the newest.
    multiprocess_mode="mostrecent",
)


async def refresh_queue_gauges(settings: Settings) -> dict[str, int]:
    """Read the queue's counts from Redis, set the gauges, and return the counts."""
    counts = await queue_counts(settings)
    for state, count in counts.items():
        QUEUE_JOBS.labels(state=state).set(count)
    return counts
