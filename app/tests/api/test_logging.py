"""JSON logs: request ids, secret redaction, and Sentry only when a DSN is set."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import sentry_sdk
import structlog
from api_helpers import API, NOVEL, client_for
from fastapi import FastAPI
from morpheus.logging import REDACTED, configure_logging, redact_secrets
from morpheus.observability import init_sentry
from morpheus.settings import Settings

FAKE_KEY = "mph_0123456789ab_" + "S3cr3tPart" * 4


@pytest.mark.parametrize(
    ("event", "secret"),
    [
        ({"password": "hunter2-pw"}, "hunter2-pw"),
        ({"db_password": "pw-in-key-name"}, "pw-in-key-name"),
        ({"Authorization": "Bearer abcdefghijkl"}, "abcdefghijkl"),
        ({"headers": {"x-api-key": "raw-header-key"}}, "raw-header-key"),
        ({"api_key": "plain"}, "plain"),
        ({"token": "tok-123"}, "tok-123"),
        ({"refresh_token": "tok-456"}, "tok-456"),
        ({"secret_key": "sk-789"}, "sk-789"),
        ({"cookie": "morpheus_session=abc"}, "morpheus_session=abc"),
        ({"event": f"key {FAKE_KEY} used"}, FAKE_KEY),
        ({"detail": ["nested", {"note": f"again {FAKE_KEY}"}]}, FAKE_KEY),
        ({"event": "header Authorization: Bearer zyxwvutsrqpo"}, "zyxwvutsrqpo"),
        ({"event": "upstream sent BASIC dXNlcjpwYXNzd29yZA=="}, "dXNlcjpwYXNzd29yZA=="),
        ({"note": "retried with bearer qwertyuiop12"}, "qwertyuiop12"),
        ({"url": "redis://:topsecretpw@redis:6379/0"}, "topsecretpw"),
        ({"url": "postgresql+psycopg://app:dbpass99@db/morpheus"}, "dbpass99"),
        (
            {"event": "postgresql+psycopg://app:dbpass98@/morpheus?host=10.0.0.4:6432&host=b:6432"},
            "dbpass98",
        ),
        ({"pairs": [("authorization", "Basic dXNlcjpwYXNz")]}, "dXNlcjpwYXNz"),
    ],
)
def test_redaction_removes_secrets(event: dict[str, object], secret: str) -> None:
    cleaned = redact_secrets(None, "info", dict(event))
    assert secret not in json.dumps(cleaned, default=str)
    assert REDACTED in json.dumps(cleaned, default=str)


@pytest.mark.parametrize(
    "event",
    [
        {"event": "comic submitted", "comic_id": "a1b2", "words": 120},
        {"path": "/v1/comics", "status": 202, "route": "/v1/comics/{comic_id:uuid}"},
        {"event": "connected to redis://redis:6379/0"},
    ],
)
def test_redaction_leaves_ordinary_fields_alone(event: dict[str, object]) -> None:
    assert redact_secrets(None, "info", dict(event)) == event


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_structlog_and_stdlib_lines_are_json_and_redacted(log_buffer: io.StringIO) -> None:
    structlog.get_logger("morpheus.test").info("login", password="pw-struct", user="ann")
    logging.getLogger("some.library").warning("connecting with %s", f"Bearer {FAKE_KEY}")
    records = lines(log_buffer)
    assert records[0]["event"] == "login"
    assert records[0]["password"] == REDACTED and records[0]["user"] == "ann"
    assert records[0]["level"] == "info" and "timestamp" in records[0]
    assert records[1]["logger"] == "some.library" and records[1]["level"] == "warning"
    text = log_buffer.getvalue()
    assert "pw-struct" not in text and FAKE_KEY not in text


async def test_access_log_carries_the_request_id_and_no_secret(
    app_factory: Callable[..., FastAPI], settings: Settings, api_key: str
) -> None:
    # A Redis URL with a password that cannot be reached: the failure gets logged.
    app = app_factory(redis_url="redis://:redis-pass-42@127.0.0.1:1/0")
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    try:
        async with client_for(app, API) as api:
            await api.get(
                "/health/live?api_key=" + FAKE_KEY,
                headers={"X-Request-ID": "req-abc-1", "Authorization": f"Bearer {FAKE_KEY}"},
            )
            await api.post(
                "/v1/comics",
                json={"title": "T", "text": NOVEL},
                headers={"Authorization": f"Bearer {api_key}", "X-Request-ID": "req-abc-2"},
            )
    finally:
        configure_logging("INFO")
    records = lines(buffer)
    access = [r for r in records if r.get("logger") == "morpheus.access"]
    first = next(r for r in access if r["request_id"] == "req-abc-1")
    assert first["status"] == 200 and first["route"] == "/health/live"
    assert first["method"] == "GET" and isinstance(first["duration_ms"], float)
    second = next(r for r in access if r["request_id"] == "req-abc-2")
    assert second["status"] == 503
    # Lines written while handling the request carry its id too.
    assert any(
        r.get("request_id") == "req-abc-2" and r.get("logger") != "morpheus.access" for r in records
    )
    text = buffer.getvalue()
    for secret in (FAKE_KEY, api_key, "redis-pass-42"):
        assert secret not in text


# --- Sentry -----------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # As Sentry's server does: the SDK compresses with Brotli when the process can
        # import it (another package may bring it), else with gzip.
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "br":
            import brotli  # only there when the SDK chose it

            body = brotli.decompress(body)
        _Collector.received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def _fail_reading(novel: str) -> None:
    """Fails with the novel in a variable of its frame."""
    raise RuntimeError(f"boom with Bearer {FAKE_KEY}")


def test_sentry_is_off_without_a_dsn(settings: Settings) -> None:
    assert init_sentry(settings) is False


async def test_sentry_reports_errors_without_secrets(
    settings: Settings, app_factory: Callable[..., FastAPI], auth: dict[str, str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = HTTPServer(("127.0.0.1", port), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received = []
    # Made at run time: Sentry sends source lines, and a literal would be in them.
    password = "pw-" + uuid.uuid4().hex
    try:
        dsn = f"http://publickey@127.0.0.1:{port}/1"
        assert init_sentry(settings.model_copy(update={"sentry_dsn": dsn})) is True
        with sentry_sdk.new_scope() as scope:
            scope.set_extra("password", password)
            scope.set_extra("note", f"key {FAKE_KEY}")
            novel = "Once upon a time, " + uuid.uuid4().hex
            try:
                _fail_reading(novel)
            except RuntimeError as exc:
                sentry_sdk.capture_exception(exc)
        sentry_sdk.flush(timeout=5)
        # With Sentry on, a submission's body is still read by the route (and only there).
        app = app_factory(sentry_dsn=dsn)
        async with client_for(app, API) as api, asyncio.timeout(20):
            response = await api.post(
                "/v1/comics", json={"title": "With Sentry", "text": NOVEL}, headers=auth
            )
        assert response.status_code == 202
    finally:
        sentry_sdk.init(dsn=None)
        server.shutdown()
        server.server_close()
    payload = b"".join(_Collector.received).decode("utf-8", "replace")
    assert "RuntimeError" in payload
    assert password not in payload and FAKE_KEY not in payload
    assert novel not in payload  # no frame's variables are sent
