"""Shared pieces of the two sites: rendering and HTML error pages."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from morpheus.db.session import database_unavailable
from morpheus.logging import get_logger
from morpheus.services.errors import (
    DATABASE_RETRY_AFTER_SECONDS,
    DATABASE_UNAVAILABLE_MESSAGE,
    ServiceError,
)
from morpheus.web.templating import make_templates

log = get_logger(__name__)

templates = make_templates()

ERROR_TITLES = {
    400: "Bad request",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not ready yet",
    413: "Too large",
    415: "Unsupported upload",
    422: "Please check your input",
    429: "Too many requests",
    503: "Temporarily unavailable",
}


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    site = getattr(request.app.state, "site", "storefront")
    return templates.TemplateResponse(
        request,
        name,
        {"site": site, **(context or {})},
        status_code=status_code,
        headers=headers,
    )


def error_page(
    request: Request, status_code: int, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"title": ERROR_TITLES.get(status_code, "Something went wrong"), "message": message},
        status_code=status_code,
        headers=headers,
    )


def install_error_pages(app: FastAPI) -> None:
    """Answer errors on a site with an HTML page instead of JSON."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        message = exc.detail if isinstance(exc.detail, str) else "The request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "There is nothing at this address."
        return error_page(request, exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> HTMLResponse:
        return error_page(request, exc.status_code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> HTMLResponse:
        return error_page(request, 422, "The request was not understood.")

    async def database_error(request: Request, exc: Exception) -> HTMLResponse:
        if not database_unavailable(exc):
            raise exc  # a programming error: the server error handler logs it (500)
        log.warning("database unavailable", path=request.url.path, error=repr(exc))
        return error_page(
            request,
            503,
            DATABASE_UNAVAILABLE_MESSAGE,
            {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeoutError, database_error)


# Redis restarts in seconds, as for a limit that cannot be checked.
SESSIONS_RETRY_AFTER_SECONDS = 30
SESSIONS_UNAVAILABLE_MESSAGE = (
    "The dashboard's sessions cannot be checked right now (Redis is not answering), so "
    "nobody can log in or stay logged in; please try again in a minute."
)


async def sessions_unavailable_page(request: Request, exc: Exception) -> HTMLResponse:
    """503 when Redis cannot be asked about a session: fail closed, never a 500."""
    log.warning("dashboard sessions unavailable", path=request.url.path, error=str(exc))
    return error_page(
        request,
        503,
        SESSIONS_UNAVAILABLE_MESSAGE,
        {"Retry-After": str(SESSIONS_RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
    )
