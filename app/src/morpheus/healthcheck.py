"""The image's health check: ask the web service's ``/health/live`` where it listens.

Run as ``python3 -m morpheus.healthcheck``; exit 0 when the service answers 200 within
:data:`TIMEOUT_SECONDS`, else 1 with one line on stderr. The address comes from
``MORPHEUS_BIND``, read the way Gunicorn reads it: the host part, or 127.0.0.1 when the
service listens on every address (empty, ``0.0.0.0``, ``::``). With host networking the
service may listen only on a private address (``10.0.0.5:8001``), where 127.0.0.1 would
find nothing.

Docker runs it every few seconds in each backend container, so it imports only the
standard library and Gunicorn's address parser: about a tenth of the CPU an HTTP client
library's import costs.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

from gunicorn.util import parse_address

DEFAULT_BIND = "0.0.0.0:8000"
LOOPBACK = "127.0.0.1"
# Addresses meaning "every interface": probe the loopback instead.
ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - compared with, never bound
TIMEOUT_SECONDS = 4.0
PATH = "/health/live"


class BindError(ValueError):
    """MORPHEUS_BIND names no TCP address to probe."""


def probe_url(bind: str | None) -> str:
    """The URL of the liveness endpoint of a service bound to ``bind``."""
    bind = (bind or "").strip() or DEFAULT_BIND
    try:
        address = parse_address(bind)
    except RuntimeError as exc:
        raise BindError(f"MORPHEUS_BIND {bind!r}: {exc}") from None
    if not isinstance(address, tuple):  # unix:PATH or fd://N
        raise BindError(f"MORPHEUS_BIND {bind!r} is not a TCP address")
    host, port = address
    if not 0 < port < 65536:
        raise BindError(f"MORPHEUS_BIND {bind!r}: port {port} is out of range")
    if host in ANY_ADDRESS:
        host = LOOPBACK
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{PATH}"


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when ``url`` answers 200, else why not. No proxy is ever asked (http.client
    reads none from the environment): one configured for the service must not answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path, headers={"Connection": "close"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        connection.close()
    if status != 200:
        return f"answered {status}"
    return None


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        url = probe_url(environ.get("MORPHEUS_BIND"))
    except BindError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    problem = check(url)
    if problem is not None:
        print(f"healthcheck: {url}: {problem}", file=sys.stderr)
        return 1
    print(f"healthcheck: {url}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
