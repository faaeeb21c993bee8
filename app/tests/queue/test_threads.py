"""The threads of an attempt's steps: results, errors, the stop flag, waiting for them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from morpheus import cancellation
from morpheus.cancellation import Cancelled, StopFlag
from morpheus.worker.threads import AttemptThreads, to_thread


def _checking(started: threading.Event, seconds: float = 30.0) -> str:
    """Works in 10 ms slices, checking the stop flag between them."""
    started.set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cancellation.check()
        time.sleep(0.01)
    return "done"


async def test_a_step_returns_its_result_and_raises_its_error() -> None:
    steps = AttemptThreads()

    def inside() -> tuple[bool, StopFlag | None]:
        return threading.current_thread().daemon, cancellation.current()

    assert await steps.run(inside) == (True, steps.flag)
    with pytest.raises(ZeroDivisionError):
        await steps.run(lambda: 1 / 0)
    assert steps.running == 0
    assert cancellation.current() is None  # the flag is the step's, not the caller's


async def test_cancelling_the_awaiting_task_stops_the_step_at_its_next_check() -> None:
    steps = AttemptThreads()
    started = threading.Event()
    task = asyncio.ensure_future(steps.run(_checking, started))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps.flag.is_set()
    assert await steps.wait(2.0)
    assert steps.running == 0
    with pytest.raises(Cancelled, match="stopped: the job was cancelled"):
        await steps.run(lambda: "never started")


async def test_wait_gives_up_on_a_step_that_does_not_check() -> None:
    steps = AttemptThreads()
    release = threading.Event()
    task = asyncio.ensure_future(steps.run(release.wait, 30))
    await asyncio.sleep(0.05)
    steps.stop("the worker is shutting down")
    started = time.monotonic()
    assert not await steps.wait(0.2)
    assert time.monotonic() - started < 1.0
    assert steps.running == 1
    release.set()
    assert await steps.wait(5)
    assert await task is True  # its result still reaches a task that kept waiting


async def test_to_thread_uses_the_bound_attempt_or_a_flag_of_its_own() -> None:
    async def attempt(steps: AttemptThreads) -> StopFlag | None:
        steps.bind()
        return await to_thread(cancellation.current)

    steps = AttemptThreads()
    assert await asyncio.ensure_future(attempt(steps)) is steps.flag
    own = await to_thread(cancellation.current)
    assert own is not None and own is not steps.flag


def test_sleep_ends_early_when_the_flag_is_set() -> None:
    flag = StopFlag()
    threading.Timer(0.1, flag.set, args=("the job timed out",)).start()
    started = time.monotonic()
    with cancellation.watching(flag), pytest.raises(Cancelled, match="the job timed out"):
        cancellation.sleep(30)
    assert time.monotonic() - started < 5
    flag.set("another reason")
    assert flag.reason == "the job timed out"
    cancellation.check()  # outside the flag's context: nothing to stop
    cancellation.sleep(0.01)
