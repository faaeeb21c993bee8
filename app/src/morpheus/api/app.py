"""The JSON API's application: its routes, its one error shape (JSON
``{"detail": ...}``, 503 with ``Retry-After`` for a database that cannot answer) and
CORS for the two sites' pages. Mounted on ``api_host`` by :mod:`morpheus.app`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.middleware.cors import CORSMiddleware

from morpheus import __version__
from morpheus.api import comics
from morpheus.api.errors import method_not_allowed, validation_error
from morpheus.db.session import database_unavailable
from morpheus.logging import get_logger
from morpheus.services.context import AppContext
from morpheus.services.errors import (
    DATABASE_RETRY_AFTER_SECONDS,
    DATABASE_UNAVAILABLE_MESSAGE,
    ServiceError,
)
from morpheus.settings import Settings

log = get_logger(__name__)


def cors_origins(settings: Settings) -> list[str]:
    """The origins allowed to call the API from a browser: the two sites (or as configured)."""
    if settings.cors_origins:
        return list(settings.cors_origins)
    origins = []
    for host in (settings.storefront_host, settings.dashboard_host):
        origins += [f"https://{host}", f"http://{host}"]
    return origins


def api_app(context: AppContext) -> FastAPI:
    """The JSON API, answering on ``api_host``."""
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
