"""Per-client request limits as the sites apply them (FastAPI dependencies and helpers),
on the moving-window counts of :mod:`morpheus.services.ratelimit`: a 429 with
``Retry-After`` when a limit is used up, a 503 when a limit that must not be passed
unchecked cannot be checked. Shared by the JSON API, the storefront and the dashboard."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from prometheus_client import Counter

from morpheus.services.context import AppContext, get_context
from morpheus.services.ratelimit import LimiterUnavailable

RATE_LIMITED = Counter(
    "morpheus_http_rate_limited_total",
    "Requests refused with 429, by site and limit.",
    ["site", "limit"],
)

MINUTE = 60
HOUR = 3600
# Retry-After of a 503 for a limit that cannot be checked: Redis restarts in seconds.
LIMITER_RETRY_AFTER_SECONDS = 30
LIMIT_UNCHECKED_DETAIL = (
    "This cannot be done right now, as its rate limit cannot be checked; "
    "please try again in a minute."
)

T = TypeVar("T")


def limit_unchecked() -> HTTPException:
    """The 503 for a limit that must not be passed unchecked and cannot be checked."""
    return HTTPException(
        status_code=503,
        detail=LIMIT_UNCHECKED_DETAIL,
        headers={"Retry-After": str(LIMITER_RETRY_AFTER_SECONDS)},
    )


def client_address(request: Request) -> str:
    """The client's address (the proxy-headers middleware has already applied X-Forwarded-For
    when, and only when, the peer is a trusted proxy)."""
    return request.client.host if request.client else "unknown"


async def enforce_limit(
    ctx: AppContext,
    request: Request,
    name: str,
    key: str,
    *,
    limit: int,
    window: int,
    fail_closed: bool = False,
) -> None:
    """Count a hit; raise 429 with Retry-After when the limit is used up.

    With ``fail_closed``, a limit that cannot be checked (Redis down) is a 503 with
    Retry-After; otherwise the request goes through."""
    try:
        decision = await ctx.limiter.hit(
            name, key, limit=limit, window=window, fail_closed=fail_closed
        )
    except LimiterUnavailable:
        raise limit_unchecked() from None
    if not decision.allowed:
        site = getattr(request.app.state, "site", "root")
        RATE_LIMITED.labels(site, name).inc()
        raise HTTPException(
            status_code=429,
            detail="Too many requests; please slow down.",
            headers={"Retry-After": str(decision.retry_after)},
        )


async def fail_closed(step: Awaitable[T]) -> T:
    """Run a step of the account lockout; a 503 when Redis cannot be asked, as for the
    login throttle: passwords are never checked while their limit is not."""
    try:
        return await step
    except LimiterUnavailable:
        raise limit_unchecked() from None


async def limit_by_address(
    request: Request, ctx: Annotated[AppContext, Depends(get_context)]
) -> None:
    """Per-address request limit for the anonymous sites."""
    site = getattr(request.app.state, "site", "web")
    await enforce_limit(
        ctx,
        request,
        f"{site}-requests",
        client_address(request),
        limit=ctx.settings.rate_limit_requests_per_minute,
        window=MINUTE,
    )


async def limit_submissions(ctx: AppContext, request: Request, who: str) -> None:
    """Per-client limit on novels submitted (an address or an API key id)."""
    await enforce_limit(
        ctx,
        request,
        "submissions",
        who,
        limit=ctx.settings.rate_limit_submissions_per_hour,
        window=HOUR,
    )
