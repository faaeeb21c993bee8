"""The image's health check (``python3 -m morpheus.healthcheck``): it probes the address in
MORPHEUS_BIND, also when the service does not listen on 127.0.0.1 (host networking)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from morpheus.healthcheck import TIMEOUT_SECONDS, BindError, probe_url
from morpheus.settings import Settings
from server_helpers import VENV_BIN, free_port, settings_env, stop

# On Linux all of 127.0.0.0/8 is local: a service bound to 127.0.0.2 is not reachable on
# 127.0.0.1, like one bound to a host's private address.
OTHER_ADDRESS = "127.0.0.2"


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        (None, "http://127.0.0.1:8000/health/live"),
        ("", "http://127.0.0.1:8000/health/live"),
        ("0.0.0.0:8000", "http://127.0.0.1:8000/health/live"),
        (":8001", "http://127.0.0.1:8001/health/live"),
        ("[::]:8002", "http://127.0.0.1:8002/health/live"),
        ("[::]", "http://127.0.0.1:8000/health/live"),
        ("10.0.0.5:8001", "http://10.0.0.5:8001/health/live"),
        (" 10.0.0.5:8001\n", "http://10.0.0.5:8001/health/live"),
        ("10.0.0.5", "http://10.0.0.5:8000/health/live"),
        ("tcp://10.0.0.5:9000", "http://10.0.0.5:9000/health/live"),
        ("[fd00::5]:8000", "http://[fd00::5]:8000/health/live"),
        ("[::1]:8003", "http://[::1]:8003/health/live"),
        ("Web.Internal:8000", "http://web.internal:8000/health/live"),
    ],
)
def test_probe_url_follows_morpheus_bind(bind: str | None, url: str) -> None:
    assert probe_url(bind) == url


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("unix:/run/morpheus.sock", "MORPHEUS_BIND 'unix:/run/morpheus.sock' is not a TCP address"),
        ("fd://3", "MORPHEUS_BIND 'fd://3' is not a TCP address"),
        ("10.0.0.5:http", "MORPHEUS_BIND '10.0.0.5:http': 'http' is not a valid port number."),
        ("10.0.0.5:70000", "MORPHEUS_BIND '10.0.0.5:70000': port 70000 is out of range"),
        ("10.0.0.5:0", "MORPHEUS_BIND '10.0.0.5:0': port 0 is out of range"),
        ("fd00::5:8000", "MORPHEUS_BIND 'fd00::5:8000': '' is not a valid port number."),
    ],
)
def test_probe_url_refuses_what_is_not_a_tcp_address(bind: str, message: str) -> None:
    with pytest.raises(BindError) as raised:
        probe_url(bind)
    assert str(raised.value) == message


def healthcheck(bind: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "MORPHEUS_BIND": bind, **extra}
    return subprocess.run(
        [sys.executable, "-m", "morpheus.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
def test_probes_the_real_service_on_the_address_it_listens_on(
    settings: Settings, tmp_path: Path
) -> None:
    secrets = tmp_path / "no-secrets"
    secrets.mkdir()
    port = free_port()
    bind = f"{OTHER_ADDRESS}:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(VENV_BIN / "morpheus"), "serve", "--bind", bind, "--workers", "1"],
            env=settings_env(settings, secrets),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, f"serve exited:\n{log.read_text()[-3000:]}"
            try:
                httpx.get(f"http://{bind}/health/live", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)

        # A proxy in the environment is not used for the probe.
        result = healthcheck(bind, HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
        assert result.returncode == 0, (result.stdout, result.stderr, log.read_text()[-3000:])
        assert result.stdout == f"healthcheck: http://{bind}/health/live: ok\n"
        assert result.stderr == ""

        # What the old probe did, asking 127.0.0.1 on the same port, finds nothing there.
        refused = healthcheck(f"0.0.0.0:{port}")
        assert refused.returncode == 1
        assert refused.stdout == ""
        assert refused.stderr.startswith(
            f"healthcheck: http://127.0.0.1:{port}/health/live: ConnectionRefusedError: "
        )
    finally:
        stop(process)


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health/live" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Unhealthy(_Answer):
    status = 503


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def ipv6_service() -> Iterator[int]:
    try:
        server = _IPv6Server(("::1", 0), _Answer)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    yield from serve(server)


@pytest.fixture
def unhealthy_service() -> Iterator[int]:
    yield from serve(ThreadingHTTPServer((OTHER_ADDRESS, 0), _Unhealthy))


def test_bracketed_ipv6_address_is_probed(ipv6_service: int) -> None:
    result = healthcheck(f"[::1]:{ipv6_service}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"healthcheck: http://[::1]:{ipv6_service}/health/live: ok\n"


def test_an_answer_other_than_200_is_unhealthy(unhealthy_service: int) -> None:
    bind = f"{OTHER_ADDRESS}:{unhealthy_service}"
    result = healthcheck(bind)
    assert result.returncode == 1
    assert result.stderr == f"healthcheck: http://{bind}/health/live: answered 503\n"


def test_a_service_that_does_not_answer_fails_after_the_timeout() -> None:
    assert TIMEOUT_SECONDS == 4
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind((OTHER_ADDRESS, 0))
        listener.listen(8)
        bind = f"{OTHER_ADDRESS}:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = healthcheck(bind)
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr == f"healthcheck: http://{bind}/health/live: TimeoutError: timed out\n"
    assert TIMEOUT_SECONDS <= elapsed < TIMEOUT_SECONDS + 3


def test_a_bind_that_is_not_tcp_exits_1_with_one_line() -> None:
    result = healthcheck("unix:/run/morpheus.sock")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "healthcheck: MORPHEUS_BIND 'unix:/run/morpheus.sock' is not a TCP address\n"
    )
