"""The reconciler: PostgreSQL says which comics must run, Redis is brought in line with it.

A queue that lost its data (Redis restarted without its append-only file, a FLUSHALL, a
failover to an empty replica) leaves comics ``queued`` or ``running`` in PostgreSQL with
no job to make them: they would wait for ever. A pass of the reconciler reads those
comics, oldest first, and asks Redis (one pipeline per page, constant-time commands) what
it holds of each one's job:

- nothing: the job is added again. Its id is the comic's id, so BullMQ ignores it should
  the job exist by then, and one comic never has two jobs;
- a waiting, delayed or active job: left alone;
- a finished job while the comic is still ``queued``: the comic went back to the queue
  after its job had finished (an operator's retry that never reached Redis, a database
  restored from a backup), so the job is retried;
- a ``failed`` job while the comic is ``running``: the job failed for good but the worker
  could not record it (PostgreSQL was away at that moment); the failure is recorded now,
  with the job's reason. The job is not run again: its attempts are spent, and an
  operator can retry the comic;
- a ``completed`` job while the comic is ``running``: a job completes only after its
  comic is recorded as finished, so PostgreSQL lost that record (a restored backup); the
  job is retried, and its idempotent steps reuse what was already made.

Every comic completes once. A queued comic is touched only ``reconciler_grace_seconds``
after its last change, so a submission or a retry still queueing it is not raced. A
running comic is touched only when its progress has not moved for the stall bound
(``reconciler_stall_seconds``, by default a job's timeout plus a dead worker's lock and
stalled check plus five minutes; a value set must exceed those): after a
FLUSHALL, a comic a live worker is still making keeps moving and is left to that worker.
And the job itself is a no-op for a comic that is already finished
(``morpheus.db.comics.start_comic`` refuses to start it).

A pass holds a Redis lock (``SET NX PX``, through redis-py's ``Lock``), so one process
reconciles at a time; it queues at most ``reconciler_batch_size`` comics and examines at
most :data:`SCAN_PAGES` pages of candidates, and it is time-bounded well within the
lock's life. Workers make a pass every ``reconciler_interval_seconds``
(:func:`run_periodically`); operators make one with ``morpheus reconcile``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import redis.asyncio as redis
import structlog
from redis.exceptions import LockError

from morpheus.db import comics
from morpheus.db.models import ComicStatus
from morpheus.db.session import session_scope
from morpheus.queue import client as queue_client
from morpheus.queue.client import JobPresence
from morpheus.queue.connection import CLIENT_SOCKET_TIMEOUT_SECONDS, redis_url_with_timeouts
from morpheus.settings import Settings
from morpheus.worker.metrics import (
    RECONCILER_FAILURES_RECORDED,
    RECONCILER_REQUEUED,
    RECONCILER_RUNS,
)

log = structlog.stdlib.get_logger("morpheus.worker.reconciler")

T = TypeVar("T")

# The lock outlives a pass, which is cut short well before the lock could lapse.
LOCK_SECONDS = 120.0
PASS_TIMEOUT_SECONDS = 90.0
# Pages of candidates (of reconciler_batch_size each) examined at most per pass.
SCAN_PAGES = 50

Action = Literal["enqueue", "retry", "record-failure"]


def lock_key(settings: Settings) -> str:
    return f"morpheus:{settings.queue_name}:reconciler"


def decide(status: str, presence: JobPresence) -> Action | None:
    """What to do for a comic in ``status`` whose job Redis holds as ``presence``."""
    if presence == "missing":
        return "enqueue"
    if presence == "live":
        return None
    if presence == "failed" and status == ComicStatus.RUNNING.value:
        return "record-failure"
    return "retry"


@dataclass
class Report:
    """What one pass did."""

    locked: bool = False  # another process held the lock: nothing was done
    scanned: int = 0
    live: int = 0
    enqueued: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failures_recorded: list[str] = field(default_factory=list)
    # More comics needed queueing than one pass may queue (or examine).
    more: bool = False

    @property
    def requeued(self) -> int:
        return len(self.enqueued) + len(self.retried)

    def summary(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "live": self.live,
            "enqueued": len(self.enqueued),
            "retried": len(self.retried),
            "failures_recorded": len(self.failures_recorded),
            "more": self.more,
        }


async def _db(settings: Settings, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def call() -> T:
        with session_scope(settings) as session:
            return operation(session, *args, **kwargs)

    return await asyncio.to_thread(call)


async def reconcile_once(settings: Settings, *, batch_size: int | None = None) -> Report:
    """One pass under the lock; a :class:`Report` with ``locked`` set when it was held."""
    url = redis_url_with_timeouts(settings.redis_url, CLIENT_SOCKET_TIMEOUT_SECONDS)
    client = redis.from_url(url)
    try:
        lock = client.lock(lock_key(settings), timeout=LOCK_SECONDS, blocking=False)
        if not await lock.acquire():
            RECONCILER_RUNS.labels(outcome="locked").inc()
            log.debug("reconcile pass skipped: another process holds the lock")
            return Report(locked=True)
        try:
            async with asyncio.timeout(PASS_TIMEOUT_SECONDS):
                report = await _pass(settings, batch_size or settings.reconciler_batch_size)
        except BaseException as exc:
            RECONCILER_RUNS.labels(outcome="error").inc()
            log.error("reconcile pass failed", error=repr(exc))
            raise
        finally:
            try:
                await lock.release()
            except (LockError, redis.RedisError) as exc:  # lapsed, or Redis away: it expires
                log.warning("reconciler lock not released", error=repr(exc))
    finally:
        await client.aclose()
    RECONCILER_RUNS.labels(outcome="ok").inc()
    acted = report.requeued or report.failures_recorded or report.more
    (log.info if acted else log.debug)("reconcile pass", **report.summary())
    return report


async def _pass(settings: Settings, batch_size: int) -> Report:
    report = Report()
    after: tuple[datetime, uuid.UUID] | None = None
    for _ in range(SCAN_PAGES):
        page = await _db(
            settings,
            comics.list_idle_unfinished,
            queued_idle_seconds=settings.reconciler_grace_seconds,
            running_idle_seconds=settings.reconciler_stall_bound,
            limit=batch_size,
            after=after,
        )
        if not page:
            return report
        after = (page[-1].created_at, page[-1].id)
        held = await queue_client.job_presence(settings, [str(comic.id) for comic in page])
        for comic in page:
            comic_id = str(comic.id)
            presence, reason = held[comic_id]
            action = decide(comic.status, presence)
            if action is None:
                report.scanned += 1
                report.live += 1
                continue
            if report.requeued + len(report.failures_recorded) >= batch_size:
                report.more = True
                return report
            report.scanned += 1
            await _act(settings, report, comic, action, presence, reason)
        if len(page) < batch_size:
            return report
    report.more = True
    return report


async def _act(
    settings: Settings,
    report: Report,
    comic: comics.Unfinished,
    action: Action,
    presence: JobPresence,
    reason: str | None,
) -> None:
    comic_id = str(comic.id)
    clog = log.bind(
        comic_id=comic_id,
        status=comic.status,
        job=presence,
        idle_seconds=round(comic.idle_seconds, 1),
    )
    if action == "record-failure":
        message = reason or "the job failed"
        try:
            await _db(settings, comics.fail_comic, comic_id, message)
        except (comics.InvalidTransition, comics.ComicNotFound) as exc:
            clog.info("failure not recorded: the comic changed meanwhile", reason=str(exc))
            return
        RECONCILER_FAILURES_RECORDED.inc()
        report.failures_recorded.append(comic_id)
        clog.warning("failed job recorded", action=action, error=message)
        return
    if action == "enqueue":
        await queue_client.enqueue_comic(settings, comic_id)
        report.enqueued.append(comic_id)
    else:
        await queue_client.retry_comic(settings, comic_id)
        report.retried.append(comic_id)
    RECONCILER_REQUEUED.labels(status=comic.status, action=action).inc()
    clog.warning("comic requeued", action=action)


async def run_periodically(settings: Settings) -> None:
    """A pass every ``reconciler_interval_seconds`` (the first after a random part of it,
    so that workers started together do not all try at once), until cancelled."""
    interval = settings.reconciler_interval_seconds
    await asyncio.sleep(random.uniform(0, interval))  # noqa: S311 - spreading, not secrecy
    while True:
        try:
            await reconcile_once(settings)
        except Exception as exc:  # logged and counted by reconcile_once; try again later
            log.debug("reconcile pass will be retried", error=repr(exc))
        await asyncio.sleep(interval)
