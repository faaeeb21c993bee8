"""What every request handler needs, built once per application."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import redis.asyncio as redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from morpheus.db.session import make_engine, make_sessionmaker
from morpheus.services.ratelimit import RateLimiter, make_redis_client
from morpheus.settings import Settings


@dataclass
class AppContext:
    """Settings, the database engine and sessions, the Redis client, the rate limiter and
    the bound on novels read at once."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis.Redis
    limiter: RateLimiter
    # Novels read at once (each in a child process) by this process.
    extractions: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.extractions = anyio.CapacityLimiter(self.settings.ingest_concurrency)

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            connect_timeout=settings.db_connect_timeout_seconds,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
        client = make_redis_client(settings.redis_url)
        limiter = RateLimiter(
            client,
            f"morpheus:{settings.queue_name}:ratelimit",
            enabled=settings.rate_limit_enabled,
        )
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            redis=client,
            limiter=limiter,
        )

    async def close(self) -> None:
        await self.redis.aclose()
        self.engine.dispose()


def get_context(request: Request) -> AppContext:
    """The application's context (a FastAPI dependency)."""
    context: AppContext = request.app.state.context
    return context
