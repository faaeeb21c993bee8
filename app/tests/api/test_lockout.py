"""Per-account login lockout with exponential backoff, beside the per-address throttle.

After LOCKOUT_THRESHOLD failed logins for one account, from any addresses, every attempt
for it is refused (429, Retry-After, a sentence saying when to retry) for a period that
doubles with each further lockout; a successful login resets it. Unknown names are
counted the same way and get the same answers, so nothing tells whether an account
exists. The state is in Redis and the lockout fails closed when Redis cannot be asked.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from api_helpers import DESK, client_for
from fastapi import FastAPI
from morpheus.services.ratelimit import (
    LOCKOUT_BASE_SECONDS,
    LOCKOUT_THRESHOLD,
    AccountLockout,
    Decision,
    LimiterUnavailable,
    make_redis_client,
)
from morpheus.settings import Settings
from server_helpers import free_port
from test_dashboard import csrf_of, log_in

WRONG = "wrong-password-0000"


def dashboard_of(app: FastAPI) -> FastAPI:
    route = next(route for route in app.router.routes if getattr(route, "name", "") == "dashboard")
    desk: FastAPI = route.app  # type: ignore[attr-defined]
    return desk


def lockout_of(app: FastAPI) -> AccountLockout:
    lockout: AccountLockout = dashboard_of(app).state.lockout
    return lockout


class OpenLimiter:
    """A per-address throttle that lets everything through (as if Redis had answered)."""

    enabled = True

    async def hit(self, *args: object, **kwargs: object) -> Decision:
        return Decision(True, 1, 0)


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def attempt(app: FastAPI, username: str, password: str, n: int) -> httpx.Response:
    """One login from its own address (the per-address throttle never counts here)."""
    async with client_for(app, DESK, addr=f"198.51.{n // 250}.{n % 250 + 1}") as desk:
        response = await log_in(desk, username, password)
        response.logged_in = (await desk.get("/")).status_code == 200  # type: ignore[attr-defined]
        return response


def neutral(text: str) -> str:
    """A page without what differs from one answer to the next (tokens, times, names)."""
    text = re.sub(r'value="[^"]*"', 'value=""', text)
    return re.sub(r"\d{2}:\d{2}:\d{2} UTC", "HH:MM:SS UTC", text)


async def test_an_account_is_locked_after_failures_from_any_address(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    username, password = operator
    failures = [await attempt(app, username, WRONG, n) for n in range(LOCKOUT_THRESHOLD)]
    assert [r.status_code for r in failures] == [401] * LOCKOUT_THRESHOLD
    assert all("Wrong username or password" in r.text for r in failures)
    # Locked: even the right password, from yet another address, is refused.
    refused = await attempt(app, username, password, 99)
    assert refused.status_code == 429
    assert not refused.logged_in  # type: ignore[attr-defined]
    retry_after = int(refused.headers["retry-after"])
    assert LOCKOUT_BASE_SECONDS - 5 <= retry_after <= LOCKOUT_BASE_SECONDS
    assert "Too many failed logins" in refused.text
    assert re.search(r"try again in 1 minute \(after \d{2}:\d{2}:\d{2} UTC\)", refused.text)
    assert refused.headers["cache-control"] == "no-store"
    # Another account is not locked.
    other = await attempt(app, f"someone-{uuid.uuid4().hex[:6]}", WRONG, 100)
    assert other.status_code == 401


async def test_unknown_names_are_counted_and_answered_the_same(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    real, _ = operator
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    answers = {}
    for name in (real, ghost):
        responses = [await attempt(app, name, WRONG, n) for n in range(LOCKOUT_THRESHOLD + 1)]
        answers[name] = responses
    for real_answer, ghost_answer in zip(answers[real], answers[ghost], strict=True):
        assert real_answer.status_code == ghost_answer.status_code
        assert neutral(real_answer.text) == neutral(ghost_answer.text)
    assert answers[ghost][-1].status_code == 429


async def test_each_lockout_is_twice_as_long_and_a_success_resets(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    username, password = operator
    clock = Clock()
    lockout_of(app).clock = clock
    periods = []
    for round_ in range(3):
        for n in range(LOCKOUT_THRESHOLD):
            assert (await attempt(app, username, WRONG, n)).status_code == 401
        refused = await attempt(app, username, password, 50 + round_)
        assert refused.status_code == 429
        periods.append(int(refused.headers["retry-after"]))
        # Still locked a second before the end, free at the end.
        clock.now += periods[-1] - 1
        assert (await attempt(app, username, WRONG, 60)).status_code == 429
        clock.now += 1
    assert periods == [LOCKOUT_BASE_SECONDS, 2 * LOCKOUT_BASE_SECONDS, 4 * LOCKOUT_BASE_SECONDS]

    # The right password, once free, logs in and wipes the account's record ...
    success = await attempt(app, username, password, 70)
    assert success.status_code == 303 and success.logged_in  # type: ignore[attr-defined]
    # ... so the next lockout is as short as the first, and comes after as many failures.
    for n in range(LOCKOUT_THRESHOLD):
        assert (await attempt(app, username, WRONG, n)).status_code == 401
    refused = await attempt(app, username, password, 80)
    assert int(refused.headers["retry-after"]) == LOCKOUT_BASE_SECONDS


async def test_failures_before_a_success_do_not_add_up(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    username, password = operator
    for _ in range(2):
        for n in range(LOCKOUT_THRESHOLD - 1):
            assert (await attempt(app, username, WRONG, n)).status_code == 401
        assert (await attempt(app, username, password, 40)).status_code == 303


async def test_concurrent_guesses_get_no_more_than_the_threshold_checked(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    username, _ = operator
    responses = await asyncio.gather(
        *(attempt(app, username, WRONG, n) for n in range(3 * LOCKOUT_THRESHOLD))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(401) <= LOCKOUT_THRESHOLD
    assert codes.count(429) >= 2 * LOCKOUT_THRESHOLD


async def test_wrong_current_passwords_on_the_password_page_count_too(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    username, password = operator
    async with client_for(app, DESK) as desk:
        assert (await log_in(desk, username, password)).status_code == 303
        token = csrf_of((await desk.get("/account/password")).text)
        form = {"new_password": "another-password-1", "repeat_password": "another-password-1"}
        codes = [
            (
                await desk.post(
                    "/account/password",
                    data={**form, "current_password": WRONG, "csrf_token": token},
                )
            ).status_code
            for _ in range(LOCKOUT_THRESHOLD + 1)
        ]
        assert codes == [400] * LOCKOUT_THRESHOLD + [429]
        right = await desk.post(
            "/account/password",
            data={**form, "current_password": password, "csrf_token": token},
        )
        assert right.status_code == 429 and "Too many failed" in right.text
    assert (await attempt(app, username, password, 1)).status_code == 429


async def test_the_lockout_fails_closed_without_redis(settings: Settings) -> None:
    client = make_redis_client(f"redis://127.0.0.1:{free_port()}/0")
    lockout = AccountLockout(client, "morpheus:nowhere:lockout")
    try:
        with pytest.raises(LimiterUnavailable):
            await lockout.begin("anyone")
        with pytest.raises(LimiterUnavailable):
            await lockout.failed("anyone")
    finally:
        await client.aclose()


async def test_login_with_redis_down_is_a_503_page_even_unthrottled(
    app_factory: Callable[..., FastAPI], operator: tuple[str, str]
) -> None:
    app = app_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    # The per-address throttle lets the attempt through: the lockout still refuses it.
    dashboard_of(app).state.context.limiter = OpenLimiter()
    async with client_for(app, DESK) as desk:
        response = await log_in(desk, *operator)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.headers["content-type"].startswith("text/html")
    assert "cannot be checked" in response.text


def test_the_lockout_is_off_with_the_rate_limits(
    app_factory: Callable[..., FastAPI],
) -> None:
    assert lockout_of(app_factory()).enabled
    assert not lockout_of(app_factory(rate_limit_enabled=False)).enabled
