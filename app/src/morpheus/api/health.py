"""Liveness, readiness and the Prometheus endpoint, answered on every host name.

Readiness and the summary report the process's latest round of checks of PostgreSQL and
Redis (:mod:`morpheus.services.readiness`): shared by concurrent requests and reused for
up to a second, never past a failure. The hot standby's state, when there is one, is
shown beside them as its reads last measured it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from morpheus import __version__
from morpheus.api.metrics import render_metrics
from morpheus.logging import get_logger
from morpheus.queue.metrics import refresh_queue_gauges
from morpheus.services.context import AppContext, get_context
from morpheus.services.readiness import service_checks

log = get_logger(__name__)

router = APIRouter(tags=["health"])

Context = Annotated[AppContext, Depends(get_context)]
NO_STORE = {"Cache-Control": "no-store"}
QUEUE_SCRAPE_TIMEOUT_SECONDS = 2.0


@router.get("/health/live")
async def live() -> JSONResponse:
    """The process answers; nothing else is touched."""
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


@router.get("/health/ready")
async def ready(ctx: Context) -> JSONResponse:
    """PostgreSQL and Redis answer; 503 naming each one that does not. The release id
    lets a deploy check that a new container runs the release it started. The hot
    standby, when there is one, is shown (``ok``, ``lagging`` or ``unavailable``) but
    never fails readiness."""
    found = await service_checks(ctx.readiness, ctx.reads)
    failed = found.failed
    body: dict[str, Any] = {
        "status": "ok" if not failed else "unavailable",
        "release_id": ctx.settings.release_id,
        "checks": found.checks,
    }
    if failed:
        body["failed"] = failed
    return JSONResponse(body, status_code=503 if failed else 200, headers=NO_STORE)


@router.get("/health")
async def summary(ctx: Context) -> JSONResponse:
    """Version, release and the state of each dependency, the hot standby's too
    (always 200: readiness gates)."""
    found = await service_checks(ctx.readiness, ctx.reads)
    return JSONResponse(
        {
            "status": "ok" if found.healthy else "degraded",
            "version": __version__,
            "release_id": ctx.settings.release_id,
            "environment": ctx.settings.environment,
            "checks": found.checks,
        },
        headers=NO_STORE,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, ctx: Context) -> Response:
    """Prometheus exposition; refused on the public host names (scrape the pod directly)."""
    host = (request.headers.get("host") or "").split(":")[0].lower()
    public = {ctx.settings.storefront_host, ctx.settings.dashboard_host, ctx.settings.api_host}
    if host in {name.lower() for name in public}:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    try:
        # Well within Prometheus' default scrape timeout (10 s).
        async with asyncio.timeout(QUEUE_SCRAPE_TIMEOUT_SECONDS):
            await refresh_queue_gauges(ctx.settings)
    except Exception as exc:
        log.warning("queue depth unavailable for metrics", error=repr(exc))
    body, content_type = render_metrics()
    return Response(content=body, media_type=content_type, headers=NO_STORE)
