"""The worker's heartbeat: a JSON document in Redis whose TTL outlives a few beats.

``queue.client.live_workers`` lists the keys still alive. A worker that dies (or whose
event loop stalls) stops beating and drops off the list within ``ttl`` seconds; a worker
that stops cleanly deletes its key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
import structlog

from morpheus.queue.connection import (
    CLIENT_SOCKET_TIMEOUT_SECONDS,
    heartbeat_key,
    redis_url_with_timeouts,
)
from morpheus.settings import Settings
from morpheus.worker.metrics import HEARTBEAT_FAILURES

log = structlog.stdlib.get_logger("morpheus.worker.heartbeat")


class Heartbeat:
    """Writes ``describe()`` under the worker's key every ``interval`` seconds."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        describe: Callable[[], dict[str, Any]],
        interval: float,
    ) -> None:
        self.key = heartbeat_key(settings, worker_id)
        self.interval = interval
        self.ttl_ms = max(1000, round(interval * 3 * 1000))
        self._describe = describe
        url = redis_url_with_timeouts(settings.redis_url, CLIENT_SOCKET_TIMEOUT_SECONDS)
        self._client = redis.from_url(url, decode_responses=True)
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        """Write the document once, with its TTL."""
        await self._client.set(self.key, json.dumps(self._describe()), px=self.ttl_ms)

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # Redis away: keep beating, the TTL tells the truth
                HEARTBEAT_FAILURES.inc()
                log.warning("heartbeat failed", error=str(exc))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        """Stop beating and delete the key (best effort: it expires anyway)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self._client.delete(self.key)
        except Exception as exc:
            log.warning("heartbeat key not deleted", error=str(exc))
        await self._client.aclose()
