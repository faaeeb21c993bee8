"""API keys for programmatic clients, as a FastAPI dependency (each request counted
against its key's limit)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from morpheus.db.models import ApiKey
from morpheus.services.accounts import authenticate_api_key
from morpheus.services.context import AppContext, get_context
from morpheus.services.request_limits import MINUTE, enforce_limit


def presented_api_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    header = request.headers.get("x-api-key", "").strip()
    return header or None


async def require_api_key(
    request: Request, ctx: Annotated[AppContext, Depends(get_context)]
) -> ApiKey:
    """The caller's active API key (401 otherwise), counted against its request limit."""
    presented = presented_api_key(request)
    if presented is None:
        raise HTTPException(
            status_code=401,
            detail="An API key is required (Authorization: Bearer <key> or X-API-Key).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    api_key = await authenticate_api_key(ctx, presented)
    if api_key is None:
        raise HTTPException(
            status_code=401,
            detail="The API key is not valid.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    await enforce_limit(
        ctx,
        request,
        "api",
        str(api_key.id),
        limit=ctx.settings.rate_limit_requests_per_minute,
        window=MINUTE,
    )
    return api_key
