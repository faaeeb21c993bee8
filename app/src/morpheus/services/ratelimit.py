"""Moving-window rate limits kept in Redis (shared by every worker process), by ``limits``.

A limit is ``limit`` hits per ``window`` seconds for one key (a client address, an API
key), counted over the last ``window`` seconds at every hit: unlike fixed windows, no
burst at a window's edge gets twice the limit through.

When Redis does not answer within the timeout, a limit that guards a secret (the login
throttle) fails closed: :class:`LimiterUnavailable`, which the routes answer with a 503.
Any other limit lets the request through, so that an outage of the limiter does not take
the service down with it; that choice is logged once per outage, when it begins. Each
failure is also told to ``on_unavailable``, if given (the readiness checks, which then
check Redis anew).

Beside the per-address login throttle, :class:`AccountLockout` counts failed logins per
account (from any address, names of no account alike): after a few in a row the account
is locked for a period that doubles with each lockout, and it too fails closed.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from morpheus.logging import get_logger

# Its lines keep the logger name they had when this lived in the API package, so that
# log queries selecting on it still find them.
log = get_logger("morpheus.api.ratelimit")

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

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        enabled: bool = True,
        on_unavailable: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.enabled = enabled
        self.on_unavailable = on_unavailable
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
        if self.on_unavailable is not None:
            self.on_unavailable()
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


# --- per-account login lockout ------------------------------------------------------------

# Failed logins in a row for one account (from any addresses) before it is locked.
LOCKOUT_THRESHOLD = 5
# The first lock lasts this long; each further one twice as long as the one before ...
LOCKOUT_BASE_SECONDS = 60
# ... up to this.
LOCKOUT_MAX_SECONDS = 3600
# An account's past lockouts are forgotten after this long without a failed login.
LOCKOUT_FORGET_SECONDS = 24 * 3600

# One Lua script per step, so that concurrent attempts cannot slip past the count.
# KEYS[1]: the account's hash {pending, level, locked_until}; ARGV: now, threshold, base
# seconds, max seconds, forget seconds. Each answers {locked (1) or not (0), locked_until}.
_LOCK = """
local function lock(now)
  local level = redis.call('hincrby', KEYS[1], 'level', 1)
  local period = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (level - 1))
  local until_ = now + period
  redis.call('hset', KEYS[1], 'locked_until', tostring(until_), 'pending', 0)
  redis.call('expire', KEYS[1], math.ceil(period + tonumber(ARGV[5])))
  return until_
end
"""
# Refuses while the account is locked, and locks it once the attempts reach the limit.
_REFUSE_WHEN_LOCKED = """
local now = tonumber(ARGV[1])
local locked = tonumber(redis.call('hget', KEYS[1], 'locked_until') or '0')
if locked > now then return {1, tostring(locked)} end
local pending = tonumber(redis.call('hget', KEYS[1], 'pending') or '0')
if pending >= tonumber(ARGV[2]) then return {1, tostring(lock(now))} end
"""
_BEGIN = (
    _LOCK
    + _REFUSE_WHEN_LOCKED
    + """redis.call('hincrby', KEYS[1], 'pending', 1)
redis.call('expire', KEYS[1], tonumber(ARGV[5]))
return {0, '0'}
"""
)
_FAILED = _LOCK + _REFUSE_WHEN_LOCKED + "return {0, '0'}\n"
# An attempt that ended neither way (the database did not answer): not a failure.
_ABANDONED = """
local pending = tonumber(redis.call('hget', KEYS[1], 'pending') or '0')
if pending > 0 then redis.call('hincrby', KEYS[1], 'pending', -1) end
return 0
"""


@dataclass(frozen=True)
class Lockout:
    """Whether an account is locked, and until when (epoch seconds)."""

    locked: bool
    until: float = 0.0
    retry_after: int = 0


class AccountLockout:
    """Locks an account out of logging in after :data:`LOCKOUT_THRESHOLD` failed logins
    in a row, from whatever addresses, for a period that doubles with each lockout.

    Every attempt counts when it begins (:meth:`begin`), so that concurrent guesses get
    no more than the threshold checked; :meth:`failed` starts the lock once the
    threshold is reached, :meth:`succeeded` forgets the account. Names that belong to
    no account are counted the same way. The state lives in Redis under ``prefix`` (the
    name hashed); Redis that cannot be asked raises :class:`LimiterUnavailable`: the
    lockout fails closed, as the login throttle does.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        enabled: bool = True,
        threshold: int = LOCKOUT_THRESHOLD,
        base_seconds: int = LOCKOUT_BASE_SECONDS,
        max_seconds: int = LOCKOUT_MAX_SECONDS,
        forget_seconds: int = LOCKOUT_FORGET_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.enabled = enabled
        self.threshold = threshold
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.forget_seconds = forget_seconds
        self.clock = clock
        self._begin = client.register_script(_BEGIN)
        self._failed = client.register_script(_FAILED)
        self._abandoned = client.register_script(_ABANDONED)

    def _key(self, account: str) -> str:
        digest = hashlib.sha256(account.strip().encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.prefix}:{digest[:32]}"

    async def _run(self, script: AsyncScript, account: str) -> Lockout:
        now = self.clock()
        args = [repr(now), self.threshold, self.base_seconds, self.max_seconds]
        try:
            locked, until = await script(
                keys=[self._key(account)], args=[*args, self.forget_seconds]
            )
        except STORAGE_ERRORS as exc:
            log.warning("account lockout unavailable: logins are refused", error=str(exc))
            raise LimiterUnavailable(f"the account lockout cannot reach Redis: {exc}") from exc
        until = float(until)
        if not int(locked) or until <= now:
            return Lockout(False)
        return Lockout(True, until, max(1, math.ceil(until - now)))

    async def begin(self, account: str) -> Lockout:
        """Count an attempt for ``account``; locked (refuse it) or not (check it)."""
        if not self.enabled:
            return Lockout(False)
        return await self._run(self._begin, account)

    async def failed(self, account: str) -> Lockout:
        """The attempt failed; locked when this failure reached the threshold."""
        if not self.enabled:
            return Lockout(False)
        return await self._run(self._failed, account)

    async def succeeded(self, account: str) -> None:
        """The attempt succeeded: forget the account's failures and lockouts."""
        if not self.enabled:
            return
        try:
            await self.client.delete(self._key(account))
        except STORAGE_ERRORS as exc:
            raise LimiterUnavailable(f"the account lockout cannot reach Redis: {exc}") from exc

    async def abandoned(self, account: str) -> None:
        """The attempt could not be checked (no database): it does not count."""
        if not self.enabled:
            return
        try:
            await self._abandoned(keys=[self._key(account)])
        except STORAGE_ERRORS:
            log.warning("account lockout unavailable: an unchecked attempt stays counted")
