"""Readiness checks of the backing services, each bounded by a short timeout."""

from __future__ import annotations

import anyio
import redis.asyncio as redis
from sqlalchemy import Engine, text

from morpheus.db.standby import ReadRouter

CHECK_TIMEOUT_SECONDS = 2.0


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


async def check_standby(reads: ReadRouter, timeout: float = CHECK_TIMEOUT_SECONDS) -> str:
    """The hot standby as its reads see it: ``ok``, ``lagging`` (too far behind, reads go
    to the primary) or ``unavailable`` (no answer within ``timeout`` seconds, or a failed
    query). The state measured in the last second is not measured again."""
    try:
        with anyio.fail_after(timeout):
            state = await anyio.to_thread.run_sync(reads.state, abandon_on_cancel=True)
    except TimeoutError:
        return "unavailable"
    if state.usable:
        return "ok"
    return "lagging" if state.reason == "lag" else "unavailable"
