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

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Host
from starlette.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from morpheus import __version__
from morpheus.api import comics, health
from morpheus.api.errors import method_not_allowed, validation_error
from morpheus.api.metrics import MetricsMiddleware
from morpheus.api.middleware import (
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    trusted_proxy_list,
)
from morpheus.db.session import database_unavailable
from morpheus.logging import configure_logging, get_logger
from morpheus.observability import init_sentry
from morpheus.services.context import AppContext
from morpheus.services.errors import (
    DATABASE_RETRY_AFTER_SECONDS,
    DATABASE_UNAVAILABLE_MESSAGE,
    ServiceError,
)
from morpheus.services.ratelimit import AccountLockout
from morpheus.services.sessions import SessionStore, SessionsUnavailable, session_prefix
from morpheus.settings import Settings
from morpheus.web import dashboard, storefront
from morpheus.web.csrf import FormTokens
from morpheus.web.pages import install_error_pages, login_required_page, sessions_unavailable_page
from morpheus.web.templating import STATIC_DIR

log = get_logger(__name__)


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


def cors_origins(settings: Settings) -> list[str]:
    """The origins allowed to call the API from a browser: the two sites (or as configured)."""
    if settings.cors_origins:
        return list(settings.cors_origins)
    origins = []
    for host in (settings.storefront_host, settings.dashboard_host):
        origins += [f"https://{host}", f"http://{host}"]
    return origins


def _api_app(context: AppContext) -> FastAPI:
    app = FastAPI(
        title="Morpheus API",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.site = "api"
    app.state.context = context
    app.include_router(comics.router)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": "30"} if exc.status_code == 503 else None
        body = {"detail": exc.message}
        if exc.limit:
            body["limit"] = exc.limit
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            raise exc  # a programming error: the server error handler logs it (500)
        log.warning("database unavailable", path=request.url.path, error=repr(exc))
        return JSONResponse(
            {"detail": DATABASE_UNAVAILABLE_MESSAGE},
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeoutError, database_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(405, method_not_allowed)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=cors_origins(context.settings),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=[
            "Authorization",
            "X-API-Key",
            "Content-Type",
            "X-Request-ID",
            "Idempotency-Key",
        ],
        expose_headers=["Location", "X-Request-ID", "Retry-After", "Idempotent-Replayed"],
        allow_credentials=False,
        max_age=600,
    )
    return app


def _site_app(name: str, context: AppContext) -> FastAPI:
    app = FastAPI(title=f"Morpheus {name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.site = name
    app.state.context = context
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_pages(app)
    return app


def create_app(settings: Settings) -> FastAPI:
    """Build the application for ``settings``; raises :class:`AppConfigError` when unusable."""
    settings = _check(settings)
    configure_logging(settings.log_level)
    sentry_on = init_sentry(settings)
    context = AppContext.build(settings)

    api = _api_app(context)

    shop = _site_app("storefront", context)
    shop.state.form_tokens = FormTokens(settings.secret_key.get_secret_value())
    shop.include_router(storefront.router)

    desk = _site_app("dashboard", context)
    desk.state.sessions = SessionStore(
        context.redis, session_prefix(settings), settings.secret_key.get_secret_value()
    )
    desk.state.lockout = AccountLockout(
        context.redis,
        f"morpheus:{settings.queue_name}:lockout",
        enabled=settings.rate_limit_enabled,
    )
    desk.include_router(dashboard.router)
    desk.add_exception_handler(dashboard.LoginRequired, login_required_page)
    desk.add_exception_handler(SessionsUnavailable, sessions_unavailable_page)

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
