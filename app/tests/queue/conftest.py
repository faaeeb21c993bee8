"""Fixtures of the queue tests: queue settings with short timings, Redis clean-up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from morpheus.settings import Settings


@pytest.fixture
def queue_settings(settings: Settings) -> Settings:
    """Settings with short queue timings so recovery paths run in seconds."""
    return settings.model_copy(
        update={
            "worker_concurrency": 1,
            "worker_metrics_port": 0,
            "worker_lock_seconds": 2.0,
            "worker_stalled_interval_seconds": 1.0,
            "worker_heartbeat_seconds": 0.5,
            "shutdown_grace_seconds": 10.0,
        }
    )


@pytest.fixture
async def redis_client(queue_settings: Settings) -> AsyncIterator[redis.Redis]:
    """A client of the test Redis; deletes the test queue's keys afterwards."""
    client = redis.from_url(queue_settings.redis_url, decode_responses=True)
    yield client
    for pattern in (
        f"bull:{queue_settings.queue_name}:*",
        f"morpheus:{queue_settings.queue_name}:*",
    ):
        keys = [key async for key in client.scan_iter(match=pattern)]
        if keys:
            await client.delete(*keys)
    await client.aclose()
