"""Answers of bytes the sites share: a page's PNG, a comic's PDF or CBZ, with an ETag and
cache headers."""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

PAGE_CACHE_CONTROL = "private, max-age=86400"


def binary_response(request: Request, data: bytes, media_type: str, **headers: str) -> Response:
    """Bytes with an ETag; answers 304 when the client already has them."""
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    common = {"ETag": etag, "Cache-Control": PAGE_CACHE_CONTROL, **headers}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=common)
    return Response(content=data, media_type=media_type, headers=common)
