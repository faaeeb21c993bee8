"""Rate limits: a moving window in Redis, and what happens when Redis cannot be asked."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable

from api_helpers import API, DESK, client_for
from fastapi import FastAPI
from morpheus.services.ratelimit import RateLimiter, make_redis_client
from morpheus.settings import Settings
from server_helpers import free_port
from structlog.testing import capture_logs

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sleep_until(instant: float) -> None:
    await asyncio.sleep(max(0.0, instant - time.time()))


async def test_twice_the_limit_across_a_window_edge_is_refused(settings: Settings) -> None:
    """Two hits just before a fixed window's edge and two just after: a fixed window
    lets all four through, the moving window only the first two."""
    window = 2
    client = make_redis_client(settings.redis_url)
    limiter = RateLimiter(client, f"morpheus:{settings.queue_name}:ratelimit")
    try:
        now = time.time()
        edge = (now // window + 1) * window
        if edge - now < 0.5:  # too close to the edge to hit twice before it
            edge += window
        await sleep_until(edge - 0.4)
        first = time.time()
        before = [await limiter.hit("edge", "k", limit=2, window=window) for _ in range(2)]
        await sleep_until(edge + 0.05)
        after = [await limiter.hit("edge", "k", limit=2, window=window) for _ in range(2)]
        assert first // window != time.time() // window, "the hits straddle a window's edge"
        assert [hit.allowed for hit in before] == [True, True]
        assert [hit.allowed for hit in after] == [False, False]
        assert 1 <= after[-1].retry_after <= window
        # Once the first hits are a whole window old, there is room again.
        await sleep_until(first + window + 0.1)
        assert (await limiter.hit("edge", "k", limit=2, window=window)).allowed
    finally:
        await client.aclose()


async def test_with_redis_unreachable_login_is_refused_and_reads_are_allowed(
    app_factory: Callable[..., FastAPI], auth: dict[str, str]
) -> None:
    app = app_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with capture_logs() as logs:
        async with client_for(app, DESK) as desk:
            form = await desk.get("/login")
            assert form.status_code == 200  # the page itself is an ordinary read
            token = CSRF_RE.search(form.text).group(1)  # type: ignore[union-attr]
            attempts = [
                await desk.post(
                    "/login",
                    data={"username": "nobody", "password": "guess-0000", "csrf_token": token},
                )
                for _ in range(2)
            ]
        async with client_for(app, API) as api:
            reads = [
                (await api.get(f"/v1/comics/{uuid.uuid4()}", headers=auth)).status_code
                for _ in range(3)
            ]
    for refused in attempts:
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "30"
        assert "rate limit cannot be checked" in refused.text
    assert reads == [404, 404, 404]
    warnings = [entry for entry in logs if entry["event"].startswith("rate limiter unavailable")]
    assert len(warnings) == 1, warnings  # once per outage, not once per request
    assert warnings[0]["log_level"] == "warning"


async def test_the_limiter_says_when_redis_is_back(settings: Settings) -> None:
    client = make_redis_client(settings.redis_url)
    limiter = RateLimiter(client, f"morpheus:{settings.queue_name}:ratelimit")
    try:
        limiter.outage = True  # as after a failed hit
        with capture_logs() as logs:
            assert (await limiter.hit("back", "k", limit=1, window=60)).allowed
        assert not limiter.outage
        assert [entry["event"] for entry in logs] == ["rate limiter available again"]
    finally:
        await client.aclose()


async def test_api_answers_with_a_moving_window_retry_after(
    app_factory: Callable[..., FastAPI], auth: dict[str, str]
) -> None:
    app = app_factory(rate_limit_requests_per_minute=1)
    async with client_for(app, API) as api:
        path = f"/v1/comics/{uuid.uuid4()}"
        assert (await api.get(path, headers=auth)).status_code == 404
        refused = await api.get(path, headers=auth)
    assert refused.status_code == 429
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json() == {"detail": "Too many requests; please slow down."}
