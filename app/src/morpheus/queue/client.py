"""Producer side of the comic queue: enqueue, retry, cancel, counts, waits and live workers.

Every function opens its own short-lived BullMQ ``Queue`` (one Redis connection), bounds
the whole call with :data:`~morpheus.queue.connection.CALL_TIMEOUT_SECONDS` and closes the
connection again, so callers (API routes through their services, the CLI, tests) need no
setup or teardown.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import redis.asyncio as redis
from bullmq import Queue

from morpheus.queue.connection import (
    CALL_TIMEOUT_SECONDS,
    CLIENT_SOCKET_TIMEOUT_SECONDS,
    COMIC_JOB_NAME,
    heartbeat_pattern,
    job_options,
    queue_options,
    redis_url_with_timeouts,
)
from morpheus.settings import Settings

# The states reported by queue_counts (BullMQ's names, "wait" spelt "waiting").
COUNTED_STATES = ("waiting", "active", "delayed", "failed", "completed")

JobPresence = Literal["missing", "live", "completed", "failed"]
"""What Redis holds of a comic's job: nothing, a job still to run or running (waiting,
active, delayed, prioritized, ...), or a finished job kept in ``completed``/``failed``."""


def job_id(comic_id: object) -> str:
    """The BullMQ job id of a comic: its UUID in canonical form."""
    try:
        return str(uuid.UUID(str(comic_id)))
    except ValueError:
        raise ValueError(f"comic id must be a UUID, not {str(comic_id)[:60]!r}") from None


@asynccontextmanager
async def open_queue(settings: Settings) -> AsyncIterator[Queue]:
    """A BullMQ ``Queue`` for the comic queue, closed on exit; the body is time-bounded."""
    queue = Queue(settings.queue_name, queue_options(settings))
    try:
        async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
            yield queue
    finally:
        await queue.close()


async def enqueue_comic(settings: Settings, comic_id: str) -> str:
    """Queue the comic job for ``comic_id``; the job id is the comic id.

    Enqueueing a comic that already has a job (waiting, active, delayed, or finished and
    still kept) adds nothing: BullMQ ignores a second job with the same id.
    """
    comic_id = job_id(comic_id)
    async with open_queue(settings) as queue:
        job = await queue.add(
            COMIC_JOB_NAME, {"comic_id": comic_id}, job_options(settings, comic_id)
        )
        return str(job.id)


async def retry_comic(settings: Settings, comic_id: str) -> str:
    """Run a failed (or finished) comic again; return what was done.

    ``"retried"``: the kept failed/completed job went back to ``wait`` with its attempts
    reset; ``"enqueued"``: no job was kept, a new one was added; ``"already-queued"``: the
    job is still waiting, delayed or active, nothing to do.
    """
    comic_id = job_id(comic_id)
    async with open_queue(settings) as queue:
        job = await queue.getJob(comic_id)
        if job is None:
            await queue.add(COMIC_JOB_NAME, {"comic_id": comic_id}, job_options(settings, comic_id))
            return "enqueued"
        state = await job.getState()
        if state in ("failed", "completed"):
            await job.retry(state, {"resetAttemptsMade": True, "resetAttemptsStarted": True})
            return "retried"
        return "already-queued"


async def cancel_comic(settings: Settings, comic_id: str) -> bool:
    """Remove the comic's job if no worker holds it (waiting, delayed, failed, completed).

    Returns True when a job was removed. An active job is locked by its worker and stays:
    the worker sees the cancelled status in PostgreSQL
    (``morpheus.db.comics.cancel_comic``) at its next step and stops.
    """
    comic_id = job_id(comic_id)
    async with open_queue(settings) as queue:
        # The removeJob script answers 1 for a job that does not exist, 0 when locked.
        if await queue.getJob(comic_id) is None:
            return False
        return await queue.remove(comic_id) == 1


async def job_presence(
    settings: Settings, comic_ids: Sequence[str]
) -> dict[str, tuple[JobPresence, str | None]]:
    """For each comic, what Redis holds of its job, and a failed job's reason.

    One pipeline of constant-time commands per call (the job's hash, its score in the
    ``completed`` and ``failed`` sets), unlike BullMQ's ``getState``, which scans the
    ``wait`` list: cheap for a long queue too.
    """
    ids = [job_id(comic_id) for comic_id in comic_ids]
    if not ids:
        return {}
    async with open_queue(settings) as queue:
        pipe = queue.client.pipeline(transaction=False)
        for id_ in ids:
            pipe.exists(queue.keys[""] + id_)
            pipe.zscore(queue.keys["completed"], id_)
            pipe.zscore(queue.keys["failed"], id_)
            pipe.hget(queue.keys[""] + id_, "failedReason")
        replies = await pipe.execute()
    answer: dict[str, tuple[JobPresence, str | None]] = {}
    for n, id_ in enumerate(ids):
        exists, completed, failed, reason = replies[4 * n : 4 * n + 4]
        if not exists:
            answer[id_] = ("missing", None)
        elif completed is not None:
            answer[id_] = ("completed", None)
        elif failed is not None:
            text = reason.decode() if isinstance(reason, bytes) else reason
            answer[id_] = ("failed", text or None)
        else:
            answer[id_] = ("live", None)
    return answer


async def job_state(settings: Settings, comic_id: str) -> str:
    """BullMQ's state of the comic's job (``waiting``, ``active``, ..., ``unknown``)."""
    comic_id = job_id(comic_id)
    async with open_queue(settings) as queue:
        return str(await queue.getJobState(comic_id))


async def queue_counts(settings: Settings) -> dict[str, int]:
    """Number of jobs per state: waiting, active, delayed, failed, completed."""
    async with open_queue(settings) as queue:
        counts = await queue.getJobCounts(*COUNTED_STATES)
        return {state: int(counts.get(state, 0)) for state in COUNTED_STATES}


async def oldest_waiting_since(settings: Settings) -> float | None:
    """When the job next in line began to wait (Unix seconds); None when none waits.

    BullMQ adds jobs at the left of the ``wait`` list and workers take them from the
    right (where a job handed back by a drain or the stalled check goes too): the
    rightmost job is the next a worker takes, in a first-in first-out queue the one that
    has waited longest. It waits since it was added (``timestamp``) or, when it comes
    back for another attempt, since its last attempt began (``processedOn``): the later
    of the two. An automatic retry's age so includes its last run and backoff. A job an
    operator retried (BullMQ clears ``processedOn`` then) counts from the day it was
    added until a worker takes it, which the alert's five minutes of grace absorb.
    """
    async with open_queue(settings) as queue:
        head = await queue.client.lindex(queue.keys["wait"], -1)
        if head is None:
            return None
        id_ = head.decode() if isinstance(head, bytes) else str(head)
        fields = await queue.client.hmget(queue.keys[""] + id_, "timestamp", "processedOn")
    texts = [value.decode() if isinstance(value, bytes) else value for value in fields]
    stamps = [int(text) for text in texts if text is not None and str(text).isdigit()]
    # A job taken or removed between the two reads has no hash left: nothing waits.
    return max(stamps) / 1000 if stamps else None


async def live_workers(settings: Settings) -> list[dict[str, Any]]:
    """The workers whose heartbeat has not expired, oldest first.

    Each entry is the worker's own heartbeat document: ``id``, ``hostname``, ``pid``,
    ``concurrency``, ``active`` (job ids), ``processed``, ``failed``, ``started_at``,
    ``seen_at``, ``release_id``.
    """
    url = redis_url_with_timeouts(settings.redis_url, CLIENT_SOCKET_TIMEOUT_SECONDS)
    client = redis.from_url(url, decode_responses=True)
    try:
        async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
            # The keyspace holds every kept job too: large steps keep the SCAN to a few calls.
            pattern = heartbeat_pattern(settings)
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            values = await client.mget(keys) if keys else []
    finally:
        await client.aclose()
    workers = [json.loads(value) for value in values if value]
    return sorted(workers, key=lambda worker: worker.get("started_at", ""))
