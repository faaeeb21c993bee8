"""Polling and inspection helpers of the queue tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from morpheus.settings import Settings

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``accept`` holds; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not accept(value):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


async def job_hash(client: redis.Redis, settings: Settings, job_id: str) -> dict[str, Any]:
    """The BullMQ job hash of ``job_id``."""
    return await client.hgetall(f"bull:{settings.queue_name}:{job_id}")


async def queue_events(client: redis.Redis, settings: Settings) -> list[tuple[int, dict[str, str]]]:
    """BullMQ's event stream of the queue: (milliseconds of the entry, fields)."""
    entries = await client.xrange(f"bull:{settings.queue_name}:events")
    return [(int(entry_id.split("-")[0]), fields) for entry_id, fields in entries]
