"""morpheus_loadtest.capacity: the capacity search's steps and when a step holds."""

from __future__ import annotations

import pytest
from morpheus_loadtest.capacity import (
    CapacitySearch,
    StepResult,
    Thresholds,
    Totals,
    address_shortfall,
    step_counts,
    step_result,
)
from morpheus_loadtest.errors import LoadTestError


@pytest.mark.parametrize(
    ("steps", "ceiling", "maximum", "expected"),
    [
        ((100, 150, 200, 300, 400), 400, None, [100, 150, 200, 300, 400]),
        ((100, 150, 200, 300, 400), 700, None, [100, 150, 200, 300, 400]),
        # With a maximum: on by the last increment, up to it.
        ((100, 150, 200, 300, 400), 700, 700, [100, 150, 200, 300, 400, 500, 600, 700]),
        ((100, 150, 200, 300, 400), 700, 650, [100, 150, 200, 300, 400, 500, 600, 650]),
        ((100, 150, 200, 300, 400), 700, 150, [100, 150]),
        ((10,), 35, 35, [10, 20, 30, 35]),
        ((20, 40), 191, None, [20, 40]),
        # The network's free addresses cap the search: the last step is the ceiling.
        ((100, 150, 200, 300, 400), 191, None, [100, 150, 191]),
        ((100, 150, 200, 300, 400), 191, 1000, [100, 150, 191]),
        ((100, 150, 200, 300, 400), 100, None, [100]),
    ],
)
def test_step_counts(steps, ceiling, maximum, expected):
    assert step_counts(steps, ceiling, maximum) == expected


@pytest.mark.parametrize(
    ("steps", "ceiling", "maximum", "message"),
    [
        ((), 100, None, "no capacity steps given"),
        ((100, 100), 400, None, "do not increase"),
        ((150, 100), 400, None, "do not increase"),
        ((0, 10), 400, None, "do not increase from 1 up"),
        ((100, 150), 50, None, "the first capacity step needs 100 users and the run can have 50"),
        ((100, 150), 400, 60, "the first capacity step needs 100 users and the run can have 60"),
        ((100, 150), 400, 0, "--max-users 0 is below 1"),
    ],
)
def test_step_counts_refuses(steps, ceiling, maximum, message):
    with pytest.raises(LoadTestError, match=message):
        step_counts(steps, ceiling, maximum)


@pytest.mark.parametrize(
    ("steps", "free", "maximum", "wanted"),
    [
        ((100, 150, 200, 300, 400), 447, None, None),
        ((100, 150, 200, 300, 400), 400, None, None),
        ((100, 150, 200, 300, 400), 191, None, 400),
        ((100, 150, 200, 300, 400), 447, 600, 600),
        # A maximum below the last step is what the search is asked for.
        ((100, 150, 200, 300, 400), 191, 150, None),
        ((20, 40), 191, None, None),
    ],
)
def test_a_search_asked_for_more_users_than_addresses_says_so(steps, free, maximum, wanted):
    said = address_shortfall(steps, free, "morpheus-local (172.30.10.0/24)", maximum)
    if wanted is None:
        assert said is None
    else:
        assert said == (
            f"the capacity search was asked for up to {wanted} users, and morpheus-local "
            f"(172.30.10.0/24) has {free} free client addresses (one per user): it will end "
            f"at {free} users at most, whether or not the platform holds more; a larger "
            "network (--network) gives it room"
        )


def result(**figures) -> StepResult:
    base = {
        "users": 100,
        "seconds": 60.0,
        "requests": 1000,
        "errors": 0,
        "limited": 0,
        "api_requests": 300,
        "api_p95_ms": 500,
    }
    return StepResult(**{**base, **figures})


@pytest.mark.parametrize(
    ("figures", "failure"),
    [
        ({}, None),
        ({"api_p95_ms": 2000}, None),
        ({"errors": 10}, None),  # 1.0% holds
        ({"limited": 500}, None),  # 429s are counted on their own, not as errors
        ({"api_p95_ms": 2100}, "API p95 2100 ms > 2000 ms"),
        ({"errors": 11}, "errors 1.1% of 1000 requests > 1.0%"),
        ({"requests": 0, "api_requests": 0, "api_p95_ms": None}, "no request was answered"),
        ({"api_requests": 0, "api_p95_ms": None}, "no API request was answered"),
    ],
)
def test_a_step_holds_within_the_thresholds(figures, failure):
    assert result(**figures).failure(Thresholds()) == failure


def test_step_result_counts_only_what_happened_during_the_step():
    start = Totals(requests=100, errors=1, limited=2, api={10: 50, 2500: 1})
    end = Totals(requests=1100, errors=3, limited=2, api={10: 300, 2500: 1, 3000: 20})
    found = step_result(150, 60.0, start, end)
    assert (found.requests, found.errors, found.limited) == (1000, 2, 0)
    assert found.api_requests == 270
    assert found.api_p95_ms == 3000  # 20 of 270 slow ones: more than 5%


class Run:
    """A made-up run: requests and API response times that grow with the users."""

    def __init__(self, slow_from: int) -> None:
        self.slow_from = slow_from
        self.users = 0
        self.totals = Totals()

    def advance(self, seconds: float) -> None:
        answered = int(self.users * seconds)
        ms = 3000 if self.users >= self.slow_from else 100
        api = dict(self.totals.api)
        api[ms] = api.get(ms, 0) + answered
        self.totals = Totals(self.totals.requests + answered, 0, 0, api)


def drive(search: CapacitySearch, run: Run, limit: float = 10_000) -> list[tuple[int, float]]:
    """Tick once a second, as Locust does, until the search ends."""
    seen, now = [], 0.0
    while now < limit:
        answer = search.tick(now)
        if answer is None:
            return seen
        if not seen or seen[-1] != answer:
            seen.append(answer)
        run.users = answer[0]
        run.advance(1.0)
        now += 1.0
    raise AssertionError("the search did not end")


def test_the_search_stops_at_the_first_step_that_does_not_hold():
    run = Run(slow_from=200)
    search = CapacitySearch(
        counts=[100, 150, 200, 300], spawn_rate=10, measure_seconds=30, totals=lambda: run.totals
    )
    assert drive(search, run) == [(100, 10), (150, 10), (200, 10)]
    assert search.held == 150
    assert search.ended == "200 users did not hold: API p95 3000 ms > 2000 ms"
    assert [r.users for r in search.results] == [100, 150, 200]
    assert all(r.seconds == 30 for r in search.results)


def test_the_search_ends_after_the_last_step_the_run_can_have():
    run = Run(slow_from=10_000)
    search = CapacitySearch(
        counts=[100, 150, 191], spawn_rate=50, measure_seconds=20, totals=lambda: run.totals
    )
    drive(search, run)
    assert search.held == 191
    assert search.ended == "191 users held, the most this run can have"


def test_a_step_is_measured_once_its_users_have_started_and_settled():
    run = Run(slow_from=10_000)
    search = CapacitySearch(
        counts=[100, 150],
        spawn_rate=10,
        measure_seconds=30,
        settle_seconds=5,
        totals=lambda: run.totals,
    )
    drive(search, run)
    first, second = search.results
    # 100 users at 10 a second: 10 s of ramp and 5 s to settle, then 30 s measured.
    assert first.requests == 100 * 30
    assert second.requests == 150 * 30


def test_the_first_step_failing_holds_nothing():
    run = Run(slow_from=0)
    search = CapacitySearch(
        counts=[100], spawn_rate=100, measure_seconds=10, totals=lambda: run.totals
    )
    drive(search, run)
    assert search.held is None
    assert search.as_dict()["held"] is None
    assert search.as_dict()["steps"][0]["failure"] == "API p95 3000 ms > 2000 ms"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"counts": []}, "needs steps"),
        ({"spawn_rate": 0}, "above 0"),
        ({"measure_seconds": 0}, "above 0"),
    ],
)
def test_a_search_refuses_a_plan_it_cannot_run(kwargs, message):
    arguments = {"counts": [10], "spawn_rate": 1, "measure_seconds": 1, "totals": Totals}
    with pytest.raises(LoadTestError, match=message):
        CapacitySearch(**{**arguments, **kwargs})
