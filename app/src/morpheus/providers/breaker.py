"""A circuit breaker: after repeated failures, stop calling for a while, then probe.

States: ``closed`` (calls go through; consecutive failures are counted), ``open`` (calls
fail at once, without touching the remote side, until ``reset_timeout`` has passed) and
``half_open`` (a limited number of trial calls go through; a success closes the circuit,
a failure opens it again). Thread-safe.

The caller reports every call it was let through, success or failure. Should a trial
call never report back (its thread stopped, an error nobody expected), its slot is given
to a new trial once ``reset_timeout`` has passed, so the circuit cannot stay half-open,
failing fast, for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

from prometheus_client import Gauge

BREAKER_STATE = Gauge(
    "morpheus_provider_circuit_state",
    "Circuit breaker state of a provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
)


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_STATE_VALUE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class CircuitOpenError(Exception):
    """The circuit is open: the call was not made."""

    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"{name} circuit is open; next trial call in {retry_in:.1f}s")
        self.retry_in = retry_in


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_max_calls = max(1, half_open_max_calls)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self._trial_at = 0.0
        BREAKER_STATE.labels(name).set(0)

    def _set(self, state: State) -> None:
        self._state = state
        BREAKER_STATE.labels(self.name).set(_STATE_VALUE[state])

    @property
    def state(self) -> State:
        with self._lock:
            if self._state is State.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
                return State.HALF_OPEN
            return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go through now."""
        with self._lock:
            if self._state is State.OPEN:
                waited = self._clock() - self._opened_at
                if waited < self.reset_timeout:
                    raise CircuitOpenError(self.name, self.reset_timeout - waited)
                self._set(State.HALF_OPEN)
                self._trials = 0
            if self._state is State.HALF_OPEN:
                now = self._clock()
                if self._trials >= self.half_open_max_calls:
                    lost = now - self._trial_at >= self.reset_timeout
                    if not lost:
                        raise CircuitOpenError(self.name, self._trial_at + self.reset_timeout - now)
                    self._trials = 0  # the trials never reported back: let new ones go
                self._trials += 1
                self._trial_at = now

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trials = 0
            if self._state is not State.CLOSED:
                self._set(State.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is State.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._trials = 0
                self._set(State.OPEN)

    def reset(self) -> None:
        with self._lock:
            self._failures = 0
            self._trials = 0
            self._set(State.CLOSED)
