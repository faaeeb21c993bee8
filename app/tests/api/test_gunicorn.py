"""The real server: Gunicorn with Uvicorn workers, SIGTERM drain, multiprocess metrics."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_helpers import NOVEL
from morpheus.settings import Settings
from server_helpers import free_port, settings_env, start_gunicorn, stop, wait_until_live

pytestmark = pytest.mark.slow

API_HOST = "api.morpheus.localhost"


def partial_request(port: int, api_key: str, body: bytes, first: int) -> socket.socket:
    """Open a submission and send its headers and the first ``first`` bytes of its body."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        "POST /v1/comics HTTP/1.1\r\n"
        f"Host: {API_HOST}\r\n"
        f"Authorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode()
    conn.sendall(head + body[:first])
    return conn


def read_response(conn: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_finishes_in_flight_requests_and_exits_0(
    settings: Settings, api_key: str, tmp_path: Path
) -> None:
    secrets = tmp_path / "no-secrets"
    secrets.mkdir()
    env = settings_env(settings, secrets)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    server = start_gunicorn(env, port, workers=2, log_path=log_path)
    try:
        wait_until_live(port, server, log_path)

        # Multiprocess metrics: requests answered by either worker add up in one scrape.
        for _ in range(12):
            assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in scrape.splitlines()
            if line.startswith("morpheus_http_requests_total{") and 'route="/health/live"' in line
        )
        assert counted >= 12  # plus the readiness polls made while starting
        assert "morpheus_queue_jobs" in scrape

        body = json.dumps({"title": "Slow upload", "text": NOVEL}).encode()
        conn = partial_request(port, api_key, body, first=len(body) // 2)
        time.sleep(0.5)  # the worker has parsed the headers: the request is in flight
        server.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 15
        while not refuses_connections(port):
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.2)
        assert server.poll() is None, "exited before the in-flight request finished"

        conn.sendall(body[len(body) // 2 :])
        response = read_response(conn)
        conn.close()
        status_line = response.split(b"\r\n", 1)[0]
        assert status_line == b"HTTP/1.1 202 Accepted", response[:500]
        assert b'"status":"queued"' in response

        assert server.wait(timeout=30) == 0
    finally:
        stop(server)
    log = log_path.read_text()
    # Gunicorn's own lines are JSON too, through the same logging set-up.
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any("Booting worker" in str(r.get("event")) for r in records), log
    assert any(r.get("logger") == "morpheus.access" for r in records)
    assert api_key not in log


def test_invalid_settings_stop_the_server_with_a_clear_message(
    settings: Settings, tmp_path: Path
) -> None:
    secrets = tmp_path / "no-secrets"
    secrets.mkdir()
    env = settings_env(settings, secrets)
    del env["MORPHEUS_DATABASE_URL"]
    env["MORPHEUS_SECRET_KEY"] = "short"
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "python:morpheus.gunicorn_conf"],
        env={**env, "MORPHEUS_BIND": f"127.0.0.1:{free_port()}"},
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0
    assert "MORPHEUS_DATABASE_URL: is required but not set" in output
    assert "MORPHEUS_SECRET_KEY: must be at least 32 characters long" in output
    assert "short" not in output.replace("MORPHEUS_SECRET_KEY", "")
