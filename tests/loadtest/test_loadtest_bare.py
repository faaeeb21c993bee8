"""morpheus_loadtest.bare against a local HTTP server: what it counts as answered and as
failed, its percentiles, and the URL it derives from an API host's /metrics."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
from morpheus_loadtest.bare import BareResult, live_url, measure, percentile, serving_url


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the service's server answers

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        body = b'{"status": "ok"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server():
    def start(status: int = 200) -> http.server.ThreadingHTTPServer:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        httpd.status = status  # type: ignore[attr-defined]
        httpd.paths = []  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd

    started: list[http.server.ThreadingHTTPServer] = []
    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def url_of(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_port}/health/live"


@pytest.mark.parametrize("processes", [1, 2])
def test_answers_are_counted_on_keep_alive_connections(server, processes):
    httpd = server()
    found = measure(
        url_of(httpd), source="127.0.0.1", connections=4, seconds=0.5, processes=processes
    )
    assert found.failed == 0
    assert found.answered > 10
    assert found.answered == len(httpd.paths)
    assert set(httpd.paths) == {"/health/live"}
    assert found.per_second == pytest.approx(found.answered / 0.5)
    assert 0 < found.p50_ms <= found.p95_ms


def test_other_statuses_are_failures_not_answers(server):
    httpd = server(status=503)
    found = measure(url_of(httpd), connections=2, seconds=0.3, processes=1)
    assert found.answered == 0
    assert found.failed == len(httpd.paths) > 0
    assert (found.p50_ms, found.p95_ms) == (None, None)


def test_a_port_that_refuses_is_counted_as_failed_without_spinning():
    found = measure(
        f"http://127.0.0.1:{closed_port()}/health/live", connections=1, seconds=0.3, processes=1
    )
    assert found.answered == 0
    assert 0 < found.failed <= 10  # one attempt per 50 ms at most


def test_nothing_to_measure_is_refused():
    with pytest.raises(ValueError, match="needs a connection"):
        measure("http://127.0.0.1:1/health/live", connections=0)


def test_percentile_is_the_nearest_rank():
    ordered = [float(n) for n in range(1, 101)]
    assert percentile(ordered, 0.95) == 95.0
    assert percentile(ordered, 0.50) == 50.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.95) is None


def test_live_url_comes_from_the_metrics_url():
    assert live_url("http://172.30.10.11:8000/metrics") == "http://172.30.10.11:8000/health/live"


def test_the_serving_slot_is_the_one_measured(server):
    """Both slots' ports are known: the closed one and one that does not answer 200 are
    passed over for the one that serves."""
    unhealthy, serving = server(503), server(200)
    metrics = [
        f"http://127.0.0.1:{closed_port()}/metrics",
        f"http://127.0.0.1:{unhealthy.server_port}/metrics",
        f"http://127.0.0.1:{serving.server_port}/metrics",
    ]
    assert serving_url(metrics) == url_of(serving)
    assert serving_url(metrics[:2]) is None


def test_result_as_dict_rounds_the_rate():
    result = BareResult("u", 2, 3.0, 10, 1, 1.5, 2.5)
    assert result.as_dict()["per_second"] == 3
    assert result.as_dict()["failed"] == 1
