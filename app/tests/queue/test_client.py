"""The queue client and the queue gauges against the real Redis."""

from __future__ import annotations

import json
import uuid

import pytest
import redis.asyncio as redis
from bullmq import Queue
from morpheus.queue import client as queue_client
from morpheus.queue.connection import queue_options, redis_url_with_timeouts
from morpheus.queue.metrics import refresh_queue_gauges
from morpheus.settings import Settings
from prometheus_client import REGISTRY
from queue_helpers import job_hash


async def test_enqueue_uses_comic_id_and_settings_and_never_doubles(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    comic_id = str(uuid.uuid4())
    assert await queue_client.enqueue_comic(queue_settings, comic_id) == comic_id
    assert await queue_client.enqueue_comic(queue_settings, comic_id) == comic_id

    counts = await queue_client.queue_counts(queue_settings)
    assert counts == {"waiting": 1, "active": 0, "delayed": 0, "failed": 0, "completed": 0}
    job = await job_hash(redis_client, queue_settings, comic_id)
    assert json.loads(job["data"]) == {"comic_id": comic_id}
    opts = json.loads(job["opts"])
    assert opts["attempts"] == queue_settings.job_attempts
    assert opts["backoff"] == {
        "type": "exponential",
        "delay": round(queue_settings.job_backoff_seconds * 1000),
    }


async def test_cancel_removes_a_waiting_job_only_once(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    keep, cancel = str(uuid.uuid4()), str(uuid.uuid4())
    await queue_client.enqueue_comic(queue_settings, keep)
    await queue_client.enqueue_comic(queue_settings, cancel)

    assert await queue_client.cancel_comic(queue_settings, cancel) is True
    assert await queue_client.cancel_comic(queue_settings, cancel) is False
    assert await queue_client.job_state(queue_settings, cancel) == "unknown"
    assert await queue_client.job_state(queue_settings, keep) == "waiting"
    assert (await queue_client.queue_counts(queue_settings))["waiting"] == 1


async def test_cancel_leaves_an_active_job_to_its_worker(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    from bullmq import Worker

    comic_id = str(uuid.uuid4())
    await queue_client.enqueue_comic(queue_settings, comic_id)
    # Take the job the way a worker does (moveToActive sets the lock), without processing it.
    worker = Worker(queue_settings.queue_name, None, queue_options(queue_settings))
    try:
        job = await worker.getNextJob("test-token")
        assert job is not None and job.id == comic_id
        assert await queue_client.cancel_comic(queue_settings, comic_id) is False
        assert await queue_client.job_state(queue_settings, comic_id) == "active"
    finally:
        await worker.close(force=True)


async def test_retry_brings_back_a_failed_job_and_reenqueues_a_removed_one(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    from bullmq import Worker

    failed = str(uuid.uuid4())
    settings = queue_settings.model_copy(update={"job_attempts": 1})
    await queue_client.enqueue_comic(settings, failed)
    worker = Worker(settings.queue_name, None, queue_options(settings))
    try:
        job = await worker.getNextJob("test-token")
        assert job is not None
        await job.moveToFailed(RuntimeError("boom"), "test-token")
    finally:
        await worker.close(force=True)
    assert await queue_client.job_state(settings, failed) == "failed"

    assert await queue_client.retry_comic(settings, failed) == "retried"
    assert await queue_client.job_state(settings, failed) == "waiting"
    assert (await job_hash(redis_client, settings, failed)).get("atm", "0") == "0"
    assert await queue_client.retry_comic(settings, failed) == "already-queued"

    gone = str(uuid.uuid4())
    assert await queue_client.retry_comic(settings, gone) == "enqueued"
    assert await queue_client.job_state(settings, gone) == "waiting"


async def test_gauges_reflect_queue_state(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    waiting = [str(uuid.uuid4()) for _ in range(3)]
    for comic_id in waiting:
        await queue_client.enqueue_comic(queue_settings, comic_id)
    queue = Queue(queue_settings.queue_name, queue_options(queue_settings))
    try:
        await queue.add("comic", {"comic_id": "later"}, {"jobId": "later", "delay": 60_000})
    finally:
        await queue.close()

    counts = await refresh_queue_gauges(queue_settings)
    assert counts == {"waiting": 3, "active": 0, "delayed": 1, "failed": 0, "completed": 0}
    for state, expected in counts.items():
        assert REGISTRY.get_sample_value("morpheus_queue_jobs", {"state": state}) == expected

    assert await queue_client.cancel_comic(queue_settings, waiting[0])
    await refresh_queue_gauges(queue_settings)
    assert REGISTRY.get_sample_value("morpheus_queue_jobs", {"state": "waiting"}) == 2


def test_redis_url_gets_timeouts_unless_it_sets_them() -> None:
    url = redis_url_with_timeouts("redis://127.0.0.1:6379/0", 5.0)
    assert url == "redis://127.0.0.1:6379/0?socket_timeout=5.0&socket_connect_timeout=5.0"
    own = redis_url_with_timeouts("redis://h:1/2?socket_timeout=1", 5.0)
    assert own == "redis://h:1/2?socket_timeout=1&socket_connect_timeout=5.0"


@pytest.mark.parametrize("bad", ["", "42", "not-a-uuid", "a:b", "../etc"])
async def test_a_comic_id_that_is_not_a_uuid_is_refused_before_redis(
    queue_settings: Settings, redis_client: redis.Redis, bad: str
) -> None:
    for call in (
        queue_client.enqueue_comic,
        queue_client.retry_comic,
        queue_client.cancel_comic,
        queue_client.job_state,
    ):
        with pytest.raises(ValueError, match="comic id must be a UUID"):
            await call(queue_settings, bad)
    assert await redis_client.keys(f"bull:{queue_settings.queue_name}:*") == []
