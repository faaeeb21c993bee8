"""The API's one error shape, how the OpenAPI document describes it, and the handlers
that render the errors FastAPI and Starlette raise themselves in that shape.

Every error answer of the API is JSON ``{"detail": "<a sentence>"}``, plus ``limit``
when a refused novel passed a limit (the setting's name).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match


class ErrorBody(BaseModel):
    """The body of every error answer of the API."""

    detail: str = Field(description="What went wrong, as a sentence for people.")
    limit: str | None = Field(
        default=None,
        description="Only when a novel was refused for passing a limit: that limit's setting.",
    )


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request was interrupted",
    401: "No valid API key (Authorization: Bearer <key> or X-API-Key)",
    404: "No such comic among this API key's, or no such page",
    409: "Not possible in the comic's state: not ready yet, or already finished",
    413: "The novel is larger than a limit: the upload, what an EPUB unpacks to, its text",
    415: "Neither JSON nor a form upload",
    422: "The request cannot be used (the detail says why)",
    429: "Too many requests (see Retry-After)",
    503: "The database or the queue is unavailable (see Retry-After)",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for ``codes``, each with the shared error body.

    ``descriptions`` replaces a default description, keyed ``e413`` for 413."""
    return {
        code: {
            "model": ErrorBody,
            "description": descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code]),
        }
        for code in codes
    }


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A request FastAPI could not validate: 422 in the shared shape, one sentence."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for item in exc.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    detail = "; ".join(parts) or "The request is not valid."
    return JSONResponse({"detail": detail}, status_code=422)


# The methods asked about when a 405 lists what the path allows.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on the request's path.

    Each method is put to the app's routes as it would be routed (FastAPI nests the
    included routers, so the routes are asked rather than listed)."""
    allowed = []
    for method in METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with an ``Allow`` header naming the methods of every route on the path.

    Starlette's own answer names only the first route that matched the path, so that
    ``DELETE /v1/comics/{id}`` went missing beside ``GET``."""
    headers = dict(getattr(exc, "headers", None) or {})
    headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    detail = exc.detail if isinstance(exc, HTTPException) else "Method Not Allowed"
    return JSONResponse({"detail": detail}, status_code=405, headers=headers)
