"""Readiness of the backing services (PostgreSQL, Redis), checked at most about once a
second per process, however often the probes ask.

Docker, the load balancers, Prometheus' blackbox exporter, a deploy's gate and the load
test ask ``/health`` and ``/health/ready`` many times a second; each request used to
check both services itself. Now a process checks them in rounds, and:

- concurrent requests share the round under way instead of starting their own;
- a round in which every service answered is reused for :data:`MAX_AGE_SECONDS` from its
  start, so a service that dies is reported within that period plus one round (each
  check bounded by :data:`CHECK_TIMEOUT_SECONDS`, and PostgreSQL's, when its URL names
  several hosts, by as long again as a new connection may spend on the hosts before the
  last: one that is down must not fail readiness while the next one answers);
- a round in which a service failed is never reused: the next request starts a new one,
  so a service that comes back is seen with the next round;
- a service never reads "ok" from a round that started before the process last met it
  failing (:meth:`Readiness.saw_failure`: a request whose database connection was
  refused or dropped, a rate limit whose Redis did not answer): such a round is not
  reused, and one that was under way reports that service unavailable.

A hot standby, when there is one, is shown beside them (:func:`service_checks`) but never
fails readiness: while it is down or behind, the primary answers its reads. Its state is
the one its reads go by (:class:`~morpheus.db.standby.ReadRouter`), which is measured at
most once a second already; so it takes no part in the rounds, and a request takes no
thread to tell it while that state is fresh.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import anyio
import redis.asyncio as redis
from sqlalchemy import Engine, text

from morpheus.db.standby import ReadRouter, StandbyState
from morpheus.logging import get_logger

# Its lines keep the logger name they had when the checks lived in the API's health
# routes, so that log queries selecting on it still find them.
log = get_logger("morpheus.api.health")

CHECK_TIMEOUT_SECONDS = 2.0
# How long a round in which every service answered is reused, from its start.
MAX_AGE_SECONDS = 1.0

POSTGRESQL = "postgresql"
REDIS = "redis"
# Shown, never failing readiness.
STANDBY = "postgresql_standby"

State = Literal["ok", "unavailable"]
Standby = Literal["ok", "lagging", "unavailable"]
Check = Callable[[], Awaitable[None]]


def _ping_postgres(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def check_postgres(engine: Engine, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Raise when PostgreSQL does not answer ``SELECT 1`` within ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        await anyio.to_thread.run_sync(_ping_postgres, engine, abandon_on_cancel=True)


async def check_redis(client: redis.Redis, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Raise when Redis does not answer PING within ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        if not await client.ping():
            raise ConnectionError("Redis did not answer PING")


async def check_standby(reads: ReadRouter, timeout: float = CHECK_TIMEOUT_SECONDS) -> Standby:
    """The hot standby as its reads see it: ``ok``, ``lagging`` (too far behind, reads go
    to the primary) or ``unavailable`` (no answer within ``timeout`` seconds, or a failed
    query). The state measured in the last second is not measured again."""
    state = reads.known_state()
    if state is None:
        try:
            with anyio.fail_after(timeout):
                state = await anyio.to_thread.run_sync(reads.state, abandon_on_cancel=True)
        except TimeoutError:
            return "unavailable"
    return _standby(state)


def _standby(state: StandbyState) -> Standby:
    if state.usable:
        return "ok"
    return "lagging" if state.reason == "lag" else "unavailable"


@dataclass(frozen=True)
class Round:
    """The state of each service as one round of checks found it."""

    checks: dict[str, State]
    # When the round started (the clock of :class:`Readiness`).
    started: float

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, state in self.checks.items() if state != "ok")


class Readiness:
    """The services' state for one process, checked in shared, briefly reused rounds."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        standby_timeout: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.checks = dict(checks)
        self.max_age = max_age
        # How long the hot standby's state may take to measure (it is shown, never gating).
        self.standby_timeout = standby_timeout
        self.clock = clock
        self._latest: Round | None = None
        self._running: asyncio.Task[Round] | None = None
        # When the process last met each service failing (written from any thread).
        self._failed_at: dict[str, float] = {}

    def saw_failure(self, name: str) -> None:
        """The process met ``name`` failing: no earlier round may call it "ok" any more.
        Safe from any thread (the database's errors are met in the thread pool)."""
        self._failed_at[name] = self.clock()

    def _last_failure(self, name: str) -> float:
        return self._failed_at.get(name, -math.inf)

    def _reusable(self, found: Round) -> bool:
        return self.clock() - found.started < self.max_age and all(
            found.started > self._last_failure(name) for name in found.checks
        )

    async def current(self) -> Round:
        """The latest round while it may be reused, else the one under way, else a new one."""
        latest = self._latest
        if latest is not None and self._reusable(latest):
            return latest
        loop = asyncio.get_running_loop()
        running = self._running
        if running is None or running.done() or running.get_loop() is not loop:
            running = self._running = loop.create_task(self._round())
        # A request that goes away (its client hung up) leaves the round to the others.
        return await asyncio.shield(running)

    async def _round(self) -> Round:
        started = self.clock()
        answered = await asyncio.gather(*(self._check(n, c) for n, c in self.checks.items()))
        checks: dict[str, State] = {
            name: "ok" if ok and started > self._last_failure(name) else "unavailable"
            for name, ok in zip(self.checks, answered, strict=True)
        }
        found = Round(checks, started)
        self._latest = None if found.failed else found
        return found

    async def _check(self, name: str, check: Check) -> bool:
        try:
            await check()
        except Exception as exc:
            log.warning("readiness check failed", check=name, error=repr(exc))
            return False
        return True


@dataclass(frozen=True)
class ServiceChecks:
    """What the health routes report: a round's PostgreSQL and Redis, and the hot
    standby's state beside them when there is one."""

    round: Round
    standby: Standby | None = None

    @property
    def checks(self) -> dict[str, str]:
        checks: dict[str, str] = dict(self.round.checks)
        if self.standby is not None:
            checks[STANDBY] = self.standby
        return checks

    @property
    def failed(self) -> list[str]:
        """The services that fail readiness: never the standby."""
        return self.round.failed

    @property
    def healthy(self) -> bool:
        """Every service answers, the standby too (it is ``ok``)."""
        return not self.failed and self.standby in (None, "ok")


async def service_checks(readiness: Readiness, reads: ReadRouter) -> ServiceChecks:
    """``readiness``'s current round, and the standby's state when ``reads`` has one;
    both at once when each must be found anew."""
    if not reads.has_standby:
        return ServiceChecks(await readiness.current())
    known = reads.known_state()
    if known is not None:
        return ServiceChecks(await readiness.current(), _standby(known))
    found, standby = await asyncio.gather(
        readiness.current(), check_standby(reads, readiness.standby_timeout)
    )
    return ServiceChecks(found, standby)


def service_readiness(
    engine: Engine,
    client: redis.Redis,
    *,
    postgres_fallback_seconds: float = 0.0,
    standby_fallback_seconds: float = 0.0,
) -> Readiness:
    """The readiness of this process's PostgreSQL (through ``engine``) and Redis. The
    ``*_fallback_seconds`` are how long a new connection may spend on the hosts its URL
    names before the last (:meth:`morpheus.database_url.Endpoints.fallback_seconds`):
    the checks of PostgreSQL and of the standby wait that much longer."""
    postgres_timeout = CHECK_TIMEOUT_SECONDS + postgres_fallback_seconds
    return Readiness(
        {
            POSTGRESQL: lambda: check_postgres(engine, postgres_timeout),
            REDIS: lambda: check_redis(client),
        },
        standby_timeout=CHECK_TIMEOUT_SECONDS + standby_fallback_seconds,
    )
