"""The circuit breaker's states: closed -> open -> half-open -> closed (or open again)."""

from __future__ import annotations

import pytest
from morpheus.providers.breaker import CircuitBreaker, CircuitOpenError, State
from prometheus_client import REGISTRY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("morpheus_provider_circuit_state", {"provider": name})


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker("t-open", failure_threshold=3, reset_timeout=10, clock=Clock())
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is State.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is State.OPEN
    assert gauge("t-open") == 2
    with pytest.raises(
        CircuitOpenError, match=r"t-open circuit is open; next trial call in 10\.0s"
    ):
        breaker.before_call()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker("t-reset", failure_threshold=2, reset_timeout=10, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is State.CLOSED
    assert breaker.failures == 1


def test_half_open_after_the_timeout_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker("t-half", failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now += 4.9
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now += 0.2
    assert breaker.state is State.HALF_OPEN
    breaker.before_call()  # the one trial call
    assert gauge("t-half") == 1
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller waits for the trial
    breaker.record_success()
    assert breaker.state is State.CLOSED
    assert gauge("t-half") == 0
    breaker.before_call()


def test_a_failed_trial_opens_the_circuit_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker("t-again", failure_threshold=3, reset_timeout=5, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 5
    breaker.before_call()
    breaker.record_failure()  # one failure is enough while half-open
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_a_trial_that_never_reports_back_gives_way_to_a_new_one() -> None:
    clock = Clock()
    breaker = CircuitBreaker("t-lost", failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    breaker.before_call()  # a trial whose caller never reports back
    clock.now += 4.9
    with pytest.raises(CircuitOpenError, match=r"next trial call in 0\.1s"):
        breaker.before_call()
    clock.now += 0.1
    breaker.before_call()  # the lost trial's slot goes to a new one
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record_success()
    assert breaker.state is State.CLOSED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"failure_threshold": 0}, "failure_threshold"), ({"reset_timeout": 0}, "reset_timeout")],
)
def test_bad_configuration_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker("t-bad", **kwargs)
