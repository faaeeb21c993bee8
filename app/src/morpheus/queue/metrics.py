"""Prometheus figures of the comic queue and its workers, read from Redis when asked.

They describe the one shared queue, not the process that exports them, so they are read
where they are exposed: the API's ``/metrics`` handler calls :func:`refresh_queue_gauges`
right before it renders the exposition (every backend container then reports the same
figures, which dashboards and alerts aggregate with ``max``), and a worker refreshes them
at every heartbeat for its own ``/metrics`` port. The figures come from a collector that
holds the last reading of this process, not from gauges kept in Gunicorn's multiprocess
files: one process's reading is never mixed with another's older one, and a reading that
failed shows as ``morpheus_queue_read_success 0`` with no stale depth beside it.

- ``morpheus_queue_jobs{state}``: jobs per BullMQ state (waiting, active, delayed,
  failed, completed);
- ``morpheus_queue_oldest_job_age_seconds``: how long the job next in line has waited
  (0 when none waits);
- ``morpheus_workers_live``, ``morpheus_workers_draining``: workers whose heartbeat
  key is alive, and those of them draining before they stop;
- ``morpheus_worker_job_slots{state}``: job slots of the live workers, ``busy`` or
  ``free`` (a draining worker's idle slots are not free: it takes no new job);
- ``morpheus_queue_read_success``: 1 when the last reading succeeded, 0 when Redis did
  not answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from morpheus.queue.client import (
    COUNTED_STATES,
    live_workers,
    oldest_waiting_since,
    queue_counts,
)
from morpheus.settings import Settings


@dataclass(frozen=True)
class QueueReading:
    """One reading of the queue and of the workers' heartbeats."""

    counts: Mapping[str, int]
    oldest_job_age_seconds: float
    workers_live: int
    workers_draining: int
    slots_busy: int
    slots_free: int


def reading_from(
    counts: Mapping[str, int],
    waiting_since: float | None,
    workers: Sequence[Mapping[str, Any]],
    now: float,
) -> QueueReading:
    """Summarise the queue's counts, its head's wait and the heartbeat documents."""
    busy = free = draining = 0
    for worker in workers:
        active = len(worker.get("active") or [])
        busy += active
        if worker.get("draining"):
            draining += 1
        else:
            free += max(0, int(worker.get("concurrency") or 0) - active)
    return QueueReading(
        counts=dict(counts),
        oldest_job_age_seconds=max(0.0, now - waiting_since) if waiting_since is not None else 0.0,
        workers_live=len(workers),
        workers_draining=draining,
        slots_busy=busy,
        slots_free=free,
    )


class QueueCollector(Collector):
    """Exposes the last :class:`QueueReading` of this process (nothing before the first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading: QueueReading | None = None
        self._succeeded: bool | None = None

    def record(self, reading: QueueReading) -> None:
        with self._lock:
            self._reading, self._succeeded = reading, True

    def record_failure(self) -> None:
        """The queue could not be read: drop the figures rather than show old ones."""
        with self._lock:
            self._reading, self._succeeded = None, False

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families(None, None)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            reading, succeeded = self._reading, self._succeeded
        return self._families(reading, succeeded)

    @staticmethod
    def _families(reading: QueueReading | None, succeeded: bool | None) -> list[GaugeMetricFamily]:
        success = GaugeMetricFamily(
            "morpheus_queue_read_success",
            "1 when this process last read the queue from Redis, 0 when Redis did not answer.",
        )
        jobs = GaugeMetricFamily(
            "morpheus_queue_jobs",
            "Jobs in the comic queue by BullMQ state, read from Redis at scrape time.",
            labels=["state"],
        )
        oldest = GaugeMetricFamily(
            "morpheus_queue_oldest_job_age_seconds",
            "Seconds the job next in line has waited for a worker (0 when none waits).",
        )
        live = GaugeMetricFamily(
            "morpheus_workers_live",
            "Workers whose heartbeat in Redis has not expired (draining ones included).",
        )
        draining = GaugeMetricFamily(
            "morpheus_workers_draining",
            "Live workers draining before they stop (they take no new job).",
        )
        slots = GaugeMetricFamily(
            "morpheus_worker_job_slots",
            "Job slots of the live workers: busy (a job in hand) or free (ready for one).",
            labels=["state"],
        )
        if succeeded is not None:
            success.add_metric([], 1.0 if succeeded else 0.0)
        if reading is not None:
            for state in COUNTED_STATES:
                jobs.add_metric([state], float(reading.counts.get(state, 0)))
            oldest.add_metric([], reading.oldest_job_age_seconds)
            live.add_metric([], float(reading.workers_live))
            draining.add_metric([], float(reading.workers_draining))
            slots.add_metric(["busy"], float(reading.slots_busy))
            slots.add_metric(["free"], float(reading.slots_free))
        return [success, jobs, oldest, live, draining, slots]


QUEUE_COLLECTOR = QueueCollector()
REGISTRY.register(QUEUE_COLLECTOR)


async def read_queue(settings: Settings) -> QueueReading:
    """Read the counts, the head of the wait list and the heartbeats (concurrently)."""
    counts, waiting_since, workers = await asyncio.gather(
        queue_counts(settings), oldest_waiting_since(settings), live_workers(settings)
    )
    return reading_from(counts, waiting_since, workers, time.time())


async def refresh_queue_gauges(settings: Settings) -> dict[str, int]:
    """Read the queue, expose the reading, and return the counts per state.

    On any failure (Redis away, the caller's timeout) the figures are dropped and
    ``morpheus_queue_read_success`` turns 0 before the error goes on to the caller.
    """
    try:
        reading = await read_queue(settings)
    except BaseException:
        QUEUE_COLLECTOR.record_failure()
        raise
    QUEUE_COLLECTOR.record(reading)
    return dict(reading.counts)
