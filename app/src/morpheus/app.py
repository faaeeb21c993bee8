"""The application factory: one ASGI app serving three sites by host name.

``api_host`` answers the JSON API, ``storefront_host`` the readers' site and
``dashboard_host`` the operators' dashboard. ``/health/*`` answer on every host name,
``/metrics`` only on names that are not public (Prometheus scrapes the instance
directly). Any other request for an unknown host name gets 404.

A database that cannot answer (down, restarting, out of pooled connections) is a 503 with
``Retry-After`` on every site: JSON on the API, an HTML page on the storefront and the
dashboard; never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
from starlette.routing import Host
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from morpheus import __version__
from morpheus.api import health
from morpheus.api.app import api_app
from morpheus.api.metrics import MetricsMiddleware
from morpheus.api.middleware import (
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    trusted_proxy_list,
)
from morpheus.logging import configure_logging, get_logger
from morpheus.observability import init_sentry
from morpheus.services.context import AppContext
from morpheus.settings import Settings
from morpheus.web.app import dashboard_app, storefront_app

# Its lines ("starting", "stopped") keep the logger name they had when the factory lived
# in the API package, so that log queries selecting on it still find them.
log = get_logger("morpheus.api.app")


class AppConfigError(RuntimeError):
    """The settings cannot make a working application; the message says which."""


def _check(settings: object) -> Settings:
    if not isinstance(settings, Settings):
        raise AppConfigError(
            "create_app needs a morpheus.settings.Settings (use morpheus.settings.get_settings())"
        )
    hosts = {
        "MORPHEUS_STOREFRONT_HOST": settings.storefront_host,
        "MORPHEUS_DASHBOARD_HOST": settings.dashboard_host,
        "MORPHEUS_API_HOST": settings.api_host,
    }
    for name, value in hosts.items():
        if not value or "/" in value or ":" in value or value != value.strip():
            raise AppConfigError(f"{name} must be a bare host name, got {value!r}")
    if len({value.lower() for value in hosts.values()}) != len(hosts):
        raise AppConfigError(
            "MORPHEUS_STOREFRONT_HOST, MORPHEUS_DASHBOARD_HOST and MORPHEUS_API_HOST must differ"
        )
    return settings


def create_app(settings: Settings) -> FastAPI:
    """Build the application for ``settings``; raises :class:`AppConfigError` when unusable."""
    settings = _check(settings)
    configure_logging(settings.log_level)
    sentry_on = init_sentry(settings)
    context = AppContext.build(settings)

    api = api_app(context)
    shop = storefront_app(context)
    desk = dashboard_app(context)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("starting", version=__version__, release_id=settings.release_id)
        yield
        await context.close()
        log.info("stopped")

    app = FastAPI(
        title="Morpheus",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.site = "root"
    app.state.context = context
    app.state.settings = settings
    app.include_router(health.router)
    app.router.routes.append(Host(settings.api_host, app=api, name="api"))
    app.router.routes.append(Host(settings.storefront_host, app=shop, name="storefront"))
    app.router.routes.append(Host(settings.dashboard_host, app=desk, name="dashboard"))

    # Each add wraps the previous ones: the request id must exist before anything logs, and
    # the client address must be settled (trusted proxies) before rate limits see it.
    if sentry_on:
        app.add_middleware(SentryAsgiMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestContextMiddleware)
    trusted = trusted_proxy_list(settings.trusted_proxies)
    if trusted:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)
    return app
