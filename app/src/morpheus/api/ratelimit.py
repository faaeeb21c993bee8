"""Fixed-window rate limits kept in Redis (shared by every worker process).

A limit is ``limit`` hits per ``window`` seconds for one key (a client address, an API
key). Each window has its own counter key that expires with the window. When Redis does
not answer within the timeout the request is let through and the failure logged: an
outage of the limiter must not take the service down with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from morpheus.logging import get_logger

log = get_logger(__name__)

REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit: allowed or not, what is left, and when to come back."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int


class RateLimiter:
    """Counts hits per key and window in Redis under ``prefix``.

    Windows follow ``clock`` (seconds since the epoch, the wall clock by default), so
    every process of every host agrees on where a window starts.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.enabled = enabled
        self.clock = clock

    async def hit(self, name: str, key: str, *, limit: int, window: int) -> Decision:
        """Count one hit of ``key`` against the limit ``name``."""
        if not self.enabled:
            return Decision(True, limit, limit, 0)
        now = self.clock()
        window_index = int(now // window)
        counter = f"{self.prefix}:{name}:{key}:{window_index}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                pipe.expire(counter, window + 1)
                count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("rate limiter unavailable, request allowed", limit=name, error=str(exc))
            return Decision(True, limit, limit, 0)
        retry_after = max(1, math.ceil((window_index + 1) * window - now))
        count = int(count)
        return Decision(count <= limit, limit, max(0, limit - count), retry_after)


def make_redis_client(url: str) -> redis.Redis:
    """A Redis client with short timeouts, for the limiter and the readiness check."""
    return redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
