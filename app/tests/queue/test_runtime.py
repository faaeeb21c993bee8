"""The worker runtime on the real Redis, in this process, with a small job handler.

The handler stands for the comic job (which the process-level tests run for real); the
queue underneath is BullMQ on the machine's Redis, never a fake.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TypeVar

import pytest
import redis.asyncio as redis
from morpheus import cancellation
from morpheus.queue import client as queue_client
from morpheus.settings import Settings
from morpheus.worker import threads
from morpheus.worker.runtime import STEP_STOP_SECONDS, WorkerRuntime
from queue_helpers import job_hash, queue_events, wait_for

T = TypeVar("T")


class SleepyJob:
    """Sleeps ``seconds`` per attempt (cooperatively); records runs and final failures."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.finished: list[str] = []
        self.failures: list[tuple[str, str]] = []

    async def run(self, comic_id: str) -> str:
        self.started.append(comic_id)
        await asyncio.sleep(self.seconds)
        self.finished.append(comic_id)
        return "completed"

    async def fail(self, comic_id: str, error: str) -> None:
        self.failures.append((comic_id, error))


async def _start(settings: Settings, handler: object) -> tuple[WorkerRuntime, asyncio.Task]:
    runtime = WorkerRuntime(settings, handler)
    task = asyncio.create_task(runtime.serve())
    return runtime, task


async def _state(settings: Settings, comic_id: str) -> str:
    return await queue_client.job_state(settings, comic_id)


async def test_timeout_fails_attempt_and_retries_with_exponential_backoff(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    settings = queue_settings.model_copy(
        update={"job_timeout_seconds": 0.3, "job_attempts": 3, "job_backoff_seconds": 0.4}
    )
    handler = SleepyJob(seconds=30)
    comic_id = str(uuid.uuid4())
    runtime, task = await _start(settings, handler)
    try:
        await queue_client.enqueue_comic(settings, comic_id)
        await wait_for(
            lambda: _state(settings, comic_id), lambda s: s == "failed", timeout=20, what="failed"
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)

    assert handler.started == [comic_id] * 3
    assert handler.finished == []
    assert handler.failures == [(comic_id, "comic job timed out after 0.3 s")]
    job = await job_hash(redis_client, settings, comic_id)
    assert job["atm"] == "3"
    assert job["failedReason"] == "comic job timed out after 0.3 s"
    # Each retry was scheduled with BullMQ's exponential backoff: 400 ms, then 800 ms.
    delays = [
        int(fields["delay"]) - at
        for at, fields in await queue_events(redis_client, settings)
        if fields.get("event") == "delayed" and fields.get("jobId") == comic_id
    ]
    # The stream entry is written a little after the retry was scheduled, so each measured
    # delay is the scheduled one minus a small lag.
    assert len(delays) == 2
    assert 150 <= delays[0] <= 400
    assert 550 <= delays[1] <= 800


class GatedJob(SleepyJob):
    """Runs until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(seconds=0)
        self.gate = asyncio.Event()

    async def run(self, comic_id: str) -> str:
        self.started.append(comic_id)
        await self.gate.wait()
        self.finished.append(comic_id)
        return "completed"


async def test_drain_finishes_inflight_job_and_takes_no_new_one(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    handler = GatedJob()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    runtime, task = await _start(queue_settings, handler)
    await queue_client.enqueue_comic(queue_settings, first)
    await wait_for(lambda: _async(handler.started), bool, timeout=10, what="first job to start")
    await queue_client.enqueue_comic(queue_settings, second)
    runtime.request_stop()
    await wait_for(lambda: _async(runtime.draining), bool, timeout=10, what="the drain")
    await asyncio.sleep(0.3)  # a worker still taking jobs would take the second one now
    assert not task.done()  # still waiting for the job in hand
    handler.gate.set()
    await asyncio.wait_for(task, 20)

    assert handler.finished == [first]
    assert await _state(queue_settings, first) == "completed"
    assert await _state(queue_settings, second) == "waiting"
    assert handler.started == [first]


async def test_grace_period_over_moves_inflight_job_back_to_wait(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    settings = queue_settings.model_copy(
        update={"shutdown_grace_seconds": 0.5, "worker_lock_seconds": 60.0}
    )
    handler = SleepyJob(seconds=60)
    comic_id = str(uuid.uuid4())
    runtime, task = await _start(settings, handler)
    await queue_client.enqueue_comic(settings, comic_id)
    await wait_for(lambda: _async(handler.started), bool, timeout=10, what="job to start")
    runtime.request_stop()
    await asyncio.wait_for(task, 10)

    # Back in wait at once (the 60 s lock was released, no stalled check was needed),
    # with no attempt counted and no failure recorded.
    assert await _state(settings, comic_id) == "waiting"
    job = await job_hash(redis_client, settings, comic_id)
    assert job.get("atm", "0") == "0"
    assert not await redis_client.exists(f"bull:{settings.queue_name}:{comic_id}:lock")
    assert handler.failures == []

    # Another worker takes it and completes it.
    handler.seconds = 0.1
    runtime, task = await _start(settings, handler)
    try:
        await wait_for(
            lambda: _state(settings, comic_id), lambda s: s == "completed", timeout=10, what="done"
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 10)
    assert handler.finished == [comic_id]


async def test_second_signal_stops_waiting_and_requeues_at_once(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    settings = queue_settings.model_copy(update={"shutdown_grace_seconds": 300.0})
    handler = GatedJob()
    comic_id = str(uuid.uuid4())
    runtime, task = await _start(settings, handler)
    await queue_client.enqueue_comic(settings, comic_id)
    await wait_for(lambda: _async(handler.started), bool, timeout=10, what="job to start")
    runtime.request_stop()
    await wait_for(lambda: _async(runtime.draining), bool, timeout=10, what="the drain")
    runtime.request_stop()  # a second SIGTERM/SIGINT: do not wait out the 300 s
    await asyncio.wait_for(task, 10)
    assert handler.finished == []
    assert await _state(settings, comic_id) == "waiting"


async def test_concurrency_runs_jobs_side_by_side(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    settings = queue_settings.model_copy(update={"worker_concurrency": 2})
    handler = GatedJob()
    comics = {str(uuid.uuid4()) for _ in range(3)}
    runtime, task = await _start(settings, handler)
    try:
        for comic_id in comics:
            await queue_client.enqueue_comic(settings, comic_id)
        await wait_for(
            lambda: _async(handler.started), lambda s: len(s) == 2, timeout=10, what="2 jobs"
        )
        await asyncio.sleep(0.3)
        assert len(handler.started) == 2  # the third waits for a free slot
        assert (await queue_client.queue_counts(settings))["active"] == 2
        handler.gate.set()
        await wait_for(
            lambda: queue_client.queue_counts(settings),
            lambda counts: counts["completed"] == 3,
            timeout=10,
            what="all three jobs to complete",
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 10)
    assert set(handler.finished) == comics


async def test_heartbeat_lists_live_workers_and_clears_on_stop(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    handler = SleepyJob(seconds=0)
    runtime, task = await _start(queue_settings, handler)
    try:
        workers = await wait_for(
            lambda: queue_client.live_workers(queue_settings), bool, timeout=5, what="heartbeat"
        )
        assert len(workers) == 1
        assert workers[0]["pid"] == runtime.pid
        assert workers[0]["queue"] == queue_settings.queue_name
        assert workers[0]["concurrency"] == 1
        key = f"morpheus:{queue_settings.queue_name}:workers:{workers[0]['id']}"
        ttl = await redis_client.pttl(key)
        assert 0 < ttl <= 3 * queue_settings.worker_heartbeat_seconds * 1000
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 10)
    assert await queue_client.live_workers(queue_settings) == []


async def _async(value: T) -> T:
    """``value`` as an awaitable, for wait_for."""
    return value


@pytest.mark.parametrize("attempts", [1])
async def test_unrecoverable_error_fails_at_once(
    queue_settings: Settings, redis_client: redis.Redis, attempts: int
) -> None:
    from bullmq.custom_errors import UnrecoverableError

    class Broken(SleepyJob):
        async def run(self, comic_id: str) -> str:
            self.started.append(comic_id)
            raise UnrecoverableError("the novel cannot be read")

    settings = queue_settings.model_copy(update={"job_attempts": 3})
    handler = Broken(seconds=0)
    comic_id = str(uuid.uuid4())
    runtime, task = await _start(settings, handler)
    try:
        await queue_client.enqueue_comic(settings, comic_id)
        await wait_for(
            lambda: _state(settings, comic_id), lambda s: s == "failed", timeout=10, what="failed"
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 10)
    assert handler.started == [comic_id] * attempts
    assert handler.failures == [(comic_id, "the novel cannot be read")]


class SpinningJob:
    """Spins on the CPU in a thread, as drawing does, checking its stop flag every 10 ms.

    ``steps`` is its step log: (what, attempt, wall-clock time) for each attempt's start,
    each slice of work done and the end of its thread."""

    def __init__(self, *seconds: float) -> None:
        self.seconds = seconds
        self.steps: list[tuple[str, int, float]] = []
        self.failures: list[tuple[str, str]] = []

    async def run(self, comic_id: str) -> str:
        attempt = sum(1 for what, *_ in self.steps if what == "started") + 1
        self.steps.append(("started", attempt, time.time()))
        await threads.to_thread(self._spin, attempt, self.seconds[attempt - 1])
        return "completed"

    def _spin(self, attempt: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                cancellation.check()
                busy = time.monotonic() + 0.01
                while time.monotonic() < busy:
                    pass
                self.steps.append(("work", attempt, time.time()))
        finally:
            self.steps.append(("ended", attempt, time.time()))

    async def fail(self, comic_id: str, error: str) -> None:
        self.failures.append((comic_id, error))

    def at(self, what: str, attempt: int) -> float:
        return next(at for w, n, at in self.steps if (w, n) == (what, attempt))


async def test_a_timed_out_step_stops_before_the_next_attempt_starts(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    settings = queue_settings.model_copy(
        update={"job_timeout_seconds": 0.3, "job_attempts": 2, "job_backoff_seconds": 0.05}
    )
    handler = SpinningJob(10.0, 0.1)
    comic_id = str(uuid.uuid4())
    runtime, task = await _start(settings, handler)
    try:
        await queue_client.enqueue_comic(settings, comic_id)
        await wait_for(
            lambda: _state(settings, comic_id), lambda s: s == "completed", timeout=20, what="done"
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)

    second = handler.at("started", 2)
    late = [(what, at - second) for what, n, at in handler.steps if n == 1 and at >= second]
    assert late == [], "the first attempt's step ran on after the second attempt started"
    assert handler.at("ended", 1) - handler.at("started", 1) < 1.0  # stopped, not run out
    assert handler.failures == []


async def test_grace_period_over_stops_the_step_before_the_job_goes_back(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    settings = queue_settings.model_copy(
        update={"shutdown_grace_seconds": 0.3, "worker_lock_seconds": 60.0}
    )
    handler = SpinningJob(60.0)
    comic_id = str(uuid.uuid4())
    runtime, task = await _start(settings, handler)
    await queue_client.enqueue_comic(settings, comic_id)
    await wait_for(lambda: _async(handler.steps), bool, timeout=10, what="job to start")
    stopping = time.monotonic()
    runtime.request_stop()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - stopping < 0.3 + STEP_STOP_SECONDS + 0.5

    assert await _state(settings, comic_id) == "waiting"
    requeued = [
        at
        for at, fields in await queue_events(redis_client, settings)
        if fields.get("jobId") == comic_id and fields.get("prev") == "active"
    ]
    assert len(requeued) == 1
    assert int(handler.at("ended", 1) * 1000) <= requeued[0]  # the thread ended first
