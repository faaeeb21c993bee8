"""Pure ASGI middleware: request id and access log, security headers; trusted proxies.

Forwarded headers are applied by uvicorn's ``ProxyHeadersMiddleware``, given the
addresses from :func:`trusted_proxy_list`: X-Forwarded-For/-Proto count only when the
peer is a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from morpheus.logging import get_logger, sane_request_id

REQUEST_ID_HEADER = "x-request-id"

log = get_logger("morpheus.access")


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``/v1/comics/{comic_id}``)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def site_name(scope: Scope) -> str:
    """Which site answered: ``api``, ``storefront``, ``dashboard`` or ``root``."""
    app = scope.get("app")
    state = getattr(app, "state", None)
    return str(getattr(state, "site", "root"))


class RequestContextMiddleware:
    """Give each request an id (echoed as X-Request-ID) and write one JSON access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                client = scope.get("client")
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    route=route_template(scope),
                    site=site_name(scope),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    client=client[0] if client else None,
                )


CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeadersMiddleware:
    """Add the app's security headers to every response, each once.

    Strict-Transport-Security is not among them: nginx, the edge that ends TLS, owns it
    (one owner per header, so that no answer carries it twice or with two values).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def trusted_proxy_list(proxies: Iterable[str]) -> list[str]:
    """Normalise addresses and networks for the proxy-headers middleware."""
    normalised: list[str] = []
    for item in proxies:
        if "/" in item:
            normalised.append(str(ipaddress.ip_network(item, strict=False)))
        else:
            normalised.append(str(ipaddress.ip_address(item)))
    return normalised
