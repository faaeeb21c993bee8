"""Each security header has one owner and is sent once.

nginx, the edge that ends TLS, owns Strict-Transport-Security; the app owns the page
headers (CSP, nosniff, Referrer-Policy, X-Frame-Options, Permissions-Policy, COOP). The
app must send each of its headers exactly once and never HSTS, over HTTP and behind the
HTTPS proxy alike: a header sent twice (by the app and again by nginx, or twice by the
app) is ambiguous to browsers. Headers are counted in the raw header list of the
response, not looked up by name (a lookup hides a duplicate).
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import API, DESK, SHOP, client_for
from fastapi import FastAPI
from morpheus.settings import Settings
from server_helpers import free_port, settings_env, start_gunicorn, stop, wait_until_live

APP_HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "permissions-policy",
    "cross-origin-opener-policy",
)
EDGE_HEADERS = ("strict-transport-security",)

# No comic has this id. (A fixed one: each test process must collect the same names.)
NO_COMIC = "00000000-0000-4000-8000-000000000000"
# (site, method, path, expected status): pages, JSON, errors and static files of each site.
ANSWERS = [
    (SHOP, "GET", "/", 200),
    (SHOP, "GET", "/static/style.css", 200),
    (SHOP, "GET", f"/comics/{NO_COMIC}", 404),
    (DESK, "GET", "/login", 200),
    (DESK, "GET", "/", 401),
    (API, "GET", f"/v1/comics/{NO_COMIC}", 401),
    (API, "PUT", f"/v1/comics/{NO_COMIC}", 405),
    (API, "GET", "/openapi.json", 200),
    (API, "GET", "/health/live", 200),
]


def counts(raw: list[tuple[bytes, bytes]]) -> Counter[str]:
    return Counter(name.decode("latin-1").lower() for name, _ in raw)


def assert_owned_headers(counted: Counter[str], where: str) -> None:
    for name in APP_HEADERS:
        assert counted[name] == 1, f"{where}: {name} sent {counted[name]} times"
    for name in EDGE_HEADERS:
        assert counted[name] == 0, f"{where}: {name} is the edge's, sent {counted[name]} times"


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(("base", "method", "path", "status"), ANSWERS)
async def test_each_app_header_once_and_no_hsts(
    app: FastAPI, scheme: str, base: str, method: str, path: str, status: int
) -> None:
    # 127.0.0.1 is a trusted proxy in the test settings: its X-Forwarded-Proto counts.
    async with client_for(app, base, addr="127.0.0.1") as client:
        response = await client.request(method, path, headers={"X-Forwarded-Proto": scheme})
    assert response.status_code == status, response.text
    assert_owned_headers(counts(response.headers.raw), f"{scheme} {method} {base}{path}")


# --- the real server, read off the socket -----------------------------------------------


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[int]:
    secrets = tmp_path / "no-secrets"
    secrets.mkdir()
    port = free_port()
    log = tmp_path / "web.log"
    process = start_gunicorn(settings_env(settings, secrets), port, workers=1, log_path=log)
    try:
        wait_until_live(port, process, log)
        yield port
    finally:
        stop(process)


def raw_head(port: int, host: str, path: str) -> tuple[int, list[tuple[bytes, bytes]]]:
    """One request over a plain socket, as nginx would send it after ending TLS; the
    status and every header line of the answer, in order, duplicates kept."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n"
        "X-Forwarded-For: 198.51.100.4\r\nConnection: close\r\n\r\n"
    ).encode()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    status = int(head[0].split()[1])
    headers = []
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return status, headers


@pytest.mark.slow
def test_the_served_bytes_carry_each_app_header_once_and_no_hsts(server: int) -> None:
    for base, path, status in (
        (SHOP, "/", 200),
        (DESK, "/login", 200),
        (API, "/openapi.json", 200),
    ):
        got, headers = raw_head(server, httpx.URL(base).host, path)
        assert got == status
        assert_owned_headers(counts(headers), f"served {base}{path}")
