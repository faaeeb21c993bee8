"""Stopping blocking work from outside: a stop flag that threaded steps check as they go.

The worker runs the comic job's blocking steps (segmenting, drawing, lettering,
composing, packaging, RunPod's polling) in threads, and nothing can stop a thread from
outside. So those loops call :func:`check` at least once per panel or page, and wait
with :func:`sleep`; when a job's time is up or the worker must stop, the worker sets the
flag of the job's steps and the next check raises :class:`Cancelled` inside the thread.

The flag travels in a context variable, so the steps need no extra argument: the worker
sets it around each threaded step (:func:`watching`). Outside a job no flag is set, and
a check is one context-variable lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Cancelled(Exception):
    """The step was asked to stop (its job timed out, or the worker is shutting down)."""


class StopFlag:
    """A one-way flag with the reason it was set; safe to use from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "stop requested"

    def set(self, reason: str) -> None:
        """Ask every step watching this flag to stop (the first reason is kept)."""
        if not self._event.is_set():
            self._reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        return self._reason

    def check(self) -> None:
        """Raise :class:`Cancelled` if the flag is set."""
        if self._event.is_set():
            raise Cancelled(f"stopped: {self._reason}")

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or raise :class:`Cancelled` as soon as the flag is set."""
        if self._event.wait(max(0.0, seconds)):
            raise Cancelled(f"stopped: {self._reason}")


_current: ContextVar[StopFlag | None] = ContextVar("morpheus_stop_flag", default=None)


@contextmanager
def watching(flag: StopFlag) -> Iterator[StopFlag]:
    """Make ``flag`` the one :func:`check` and :func:`sleep` look at, in this context."""
    token = _current.set(flag)
    try:
        yield flag
    finally:
        _current.reset(token)


def current() -> StopFlag | None:
    """The flag of the step running in this context, if any."""
    return _current.get()


def check() -> None:
    """Raise :class:`Cancelled` if the current step was asked to stop."""
    flag = _current.get()
    if flag is not None:
        flag.check()


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early, with :class:`Cancelled`, when the step must stop."""
    flag = _current.get()
    if flag is None:
        time.sleep(max(0.0, seconds))
    else:
        flag.sleep(seconds)
