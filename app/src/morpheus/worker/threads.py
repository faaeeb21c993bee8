"""The threads of one job attempt's blocking steps: started, told to stop, waited for.

``asyncio.to_thread`` cannot stop its thread: cancelling the task that awaits it leaves
the thread running, and ``asyncio.run`` waits for it on exit. An attempt that timed out,
or that was handed back to the queue at shutdown, would go on drawing and writing panels
beside the attempt that replaced it. Here each blocking step runs in a daemon thread of
its own, under the attempt's stop flag (:mod:`morpheus.cancellation`):

- cancelling the task that awaits a step sets the flag, and the step raises
  :class:`~morpheus.cancellation.Cancelled` at its next check (once per panel or page);
- the worker runtime waits for the attempt's threads to end (:meth:`AttemptThreads.wait`)
  before the job may run anywhere else;
- a step that never checks cannot hold the process: daemon threads end with it, and
  nothing waits for them on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from morpheus.cancellation import StopFlag, watching

T = TypeVar("T")

_attempt: contextvars.ContextVar[AttemptThreads | None] = contextvars.ContextVar(
    "morpheus_attempt_threads", default=None
)


class AttemptThreads:
    """The blocking steps of one attempt, and the flag that stops them all."""

    def __init__(self) -> None:
        self.flag = StopFlag()
        self._running: set[asyncio.Future[Any]] = set()

    def bind(self) -> None:
        """Make :func:`to_thread` start its threads here, in the calling task's context."""
        _attempt.set(self)

    @property
    def running(self) -> int:
        """How many of the attempt's steps have not returned yet."""
        return len(self._running)

    def stop(self, reason: str) -> None:
        """Ask every step of the attempt to stop (the first reason is kept)."""
        self.flag.set(reason)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for every step to return; False if some still run after ``timeout`` s."""
        if not self._running:
            return True
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        return not pending

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a daemon thread that watches the attempt's flag.

        A stopped attempt starts no new step (:class:`~morpheus.cancellation.Cancelled`).
        Cancelling the awaiting task stops the attempt; the step goes on until its next
        check, and :meth:`wait` tells when it has returned.
        """
        self.flag.check()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()
        flag = self.flag

        def target() -> None:
            try:
                result = context.run(_watched, flag, fn, args, kwargs)
            except BaseException as exc:  # handed to the awaiting task, as to_thread does
                _post(loop, done, None, exc)
            else:
                _post(loop, done, result, None)

        name = getattr(fn, "__name__", type(fn).__name__)
        thread = threading.Thread(target=target, name=f"morpheus-step:{name}", daemon=True)
        self._running.add(done)
        done.add_done_callback(self._returned)
        thread.start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self.flag.set("the job was cancelled")
            raise

    def _returned(self, done: asyncio.Future[Any]) -> None:
        self._running.discard(done)
        if not done.cancelled():
            done.exception()  # retrieved: a stopped step's error has no one to go to


def _watched(flag: StopFlag, fn: Callable[..., T], args: tuple[Any, ...], kwargs: Any) -> T:
    with watching(flag):
        return fn(*args, **kwargs)


def _post(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # A closed loop: the process is exiting and no one waits for the step any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, done, result, error)


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` that can be stopped: a step of the current attempt.

    Outside an attempt (a script, a test calling the comic job directly) the step gets a
    flag of its own, set when its awaiting task is cancelled.
    """
    threads = _attempt.get() or AttemptThreads()
    return await threads.run(fn, *args, **kwargs)
