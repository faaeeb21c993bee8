"""The queue at a glance, for the dashboard: jobs per state and the live workers."""

from __future__ import annotations

import asyncio
from typing import Any

from morpheus.logging import get_logger
from morpheus.queue import client as queue_client
from morpheus.services.context import AppContext

# Its lines keep the logger name they had when this lived in the API package, so that
# log queries selecting on it still find them.
log = get_logger("morpheus.api.services")

# A page waits this long for the queue's figures before showing it without them.
OVERVIEW_TIMEOUT_SECONDS = 3.0


async def queue_overview(
    ctx: AppContext,
) -> tuple[dict[str, int] | None, list[dict[str, Any]] | None]:
    """Jobs per state and the live workers; None for a part the queue could not tell."""
    counts: dict[str, int] | None
    workers: list[dict[str, Any]] | None
    try:
        async with asyncio.timeout(OVERVIEW_TIMEOUT_SECONDS):
            counts = await queue_client.queue_counts(ctx.settings)
    except Exception as exc:
        log.warning("queue counts unavailable", error=repr(exc))
        counts = None
    try:
        async with asyncio.timeout(OVERVIEW_TIMEOUT_SECONDS):
            workers = await queue_client.live_workers(ctx.settings)
    except Exception as exc:
        log.warning("live workers unavailable", error=repr(exc))
        workers = None
    return counts, workers
