"""Moving-window rate limits kept in Redis (shared by every worker process), by ``limits``.

A limit is ``limit`` hits per ``window`` seconds for one key (a client address, an API
key), counted over the last ``window`` seconds at every hit: unlike fixed windows, no
burst at a window's edge gets twice the limit through.

When Redis does not answer within the timeout, a limit that guards a secret (the login
throttle) fails closed: :class:`LimiterUnavailable`, which the routes answer with a 503.
Any other limit lets the request through, so that an outage of the limiter does not take
the service down with it; that choice is logged once per outage, when it begins.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as redis
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from morpheus.logging import get_logger

log = get_logger(__name__)

REDIS_TIMEOUT_SECONDS = 0.5
# What Redis failing looks like, from limits (wrapped) or from the client itself.
STORAGE_ERRORS = (StorageError, RedisError, OSError, TimeoutError)


class LimiterUnavailable(Exception):
    """Redis could not be asked about a limit that must not be passed unchecked."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit: allowed or not, and when to come back."""

    allowed: bool
    limit: int
    retry_after: int


class RateLimiter:
    """Counts hits per limit name and key in Redis, under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str, *, enabled: bool = True) -> None:
        self.client = client
        self.prefix = prefix
        self.enabled = enabled
        # The limiter shares the client's connections (and so its timeouts).
        self.storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            connection_pool=client.connection_pool,
        )
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.outage = False

    async def hit(
        self, name: str, key: str, *, limit: int, window: int, fail_closed: bool = False
    ) -> Decision:
        """Count one hit of ``key`` against the limit ``name``.

        Raises :class:`LimiterUnavailable` when Redis cannot be asked and ``fail_closed``.
        """
        if not self.enabled:
            return Decision(True, limit, 0)
        item = RateLimitItemPerSecond(limit, window)
        try:
            if await self.strategy.hit(item, name, key):
                allowed, retry_after = True, 0
            else:
                stats = await self.strategy.get_window_stats(item, name, key)
                allowed = False
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        except STORAGE_ERRORS as exc:
            return self.unavailable(name, limit, exc, fail_closed=fail_closed)
        if self.outage:
            self.outage = False
            log.info("rate limiter available again", limit=name)
        return Decision(allowed, limit, retry_after)

    def unavailable(self, name: str, limit: int, exc: Exception, *, fail_closed: bool) -> Decision:
        if not self.outage:
            self.outage = True
            log.warning(
                "rate limiter unavailable: limits are not enforced until Redis answers, "
                "except the login throttle, which refuses",
                limit=name,
                error=str(exc),
            )
        if fail_closed:
            raise LimiterUnavailable(f"the rate limiter cannot reach Redis: {exc}") from exc
        return Decision(True, limit, 0)


def make_redis_client(url: str) -> redis.Redis:
    """A Redis client with short timeouts, for the limiter and the readiness check."""
    return redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
