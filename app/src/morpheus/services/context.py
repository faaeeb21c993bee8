"""What every request handler needs, built once per application."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import redis.asyncio as redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from morpheus.database_url import endpoints
from morpheus.db.session import make_engine, make_sessionmaker, on_unavailable
from morpheus.db.standby import ReadRouter
from morpheus.services.ratelimit import RateLimiter, make_redis_client
from morpheus.services.readiness import POSTGRESQL, REDIS, Readiness, service_readiness
from morpheus.settings import Settings


@dataclass
class AppContext:
    """Settings, the database engine and sessions, the reads the hot standby may answer,
    the Redis client, the rate limiter, the readiness of PostgreSQL and Redis, and the
    bound on novels read at once."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # Reads named as the standby's to answer (status polls, the dashboard's listing);
    # every other query uses ``sessions``, the primary's.
    reads: ReadRouter
    redis: redis.Redis
    limiter: RateLimiter
    readiness: Readiness
    # Novels read at once (each in a child process) by this process.
    extractions: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.extractions = anyio.CapacityLimiter(self.settings.ingest_concurrency)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        engine = _engine(settings, settings.database_url)
        sessions = make_sessionmaker(engine)
        standby = None
        if settings.database_read_url:
            standby = _engine(settings, settings.database_read_url, read_only=True)
        client = make_redis_client(settings.redis_url)
        readiness = service_readiness(
            engine,
            client,
            postgres_fallback_seconds=_fallback_seconds(settings, settings.database_url),
            standby_fallback_seconds=_fallback_seconds(settings, settings.database_read_url),
        )
        # What the process's own requests meet counts too: a failure is never hidden by
        # a round that passed before it. The reads the primary answers in the standby's
        # stead go through ``engine`` too; the standby's own failures never fail readiness.
        on_unavailable(engine, lambda: readiness.saw_failure(POSTGRESQL))
        limiter = RateLimiter(
            client,
            f"morpheus:{settings.queue_name}:ratelimit",
            enabled=settings.rate_limit_enabled,
            on_unavailable=lambda: readiness.saw_failure(REDIS),
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            reads=ReadRouter(
                engine, standby, max_lag_seconds=settings.database_read_max_lag_seconds
            ),
            redis=client,
            limiter=limiter,
            readiness=readiness,
        )

    async def close(self) -> None:
        await self.redis.aclose()
        self.reads.close()
        self.engine.dispose()


def _engine(settings: Settings, url: str, *, read_only: bool = False) -> Engine:
    """An engine for the primary or the standby, with the same pool and timeouts."""
    return make_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        read_only=read_only,
    )


def _fallback_seconds(settings: Settings, url: str | None) -> float:
    """How long a new connection to ``url`` may spend on the hosts before its last."""
    if not url:
        return 0.0
    return endpoints(url).fallback_seconds(settings.db_connect_timeout_seconds)


async def get_context(request: Request) -> AppContext:
    """The application's context (a FastAPI dependency). A coroutine, though it awaits
    nothing: FastAPI runs a plain function dependency in its thread pool, a hop for
    every request that names it."""
    context: AppContext = request.app.state.context
    return context
