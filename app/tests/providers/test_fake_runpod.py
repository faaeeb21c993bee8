"""The fake RunPod server runs as its own process and is scriptable over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.fake_runpod import TEST_API_KEY, TEST_ENDPOINT_ID, FakeRunPod
from morpheus.providers.runpod import RunPodClient, RunPodConfig

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
# The fake is a module of the tests (``fakes``), run from their folder.
TESTS_DIR = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakes.fake_runpod",
            "--port",
            str(port),
            "--run-seconds",
            "0.05",
        ],
        cwd=TESTS_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"listening on http://127.0.0.1:{port}" in line, line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_server_process_answers_runpods_routes(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=5) as http:
        assert http.get(f"/v2/{TEST_ENDPOINT_ID}/health").status_code == 401
        health = http.get(f"/v2/{TEST_ENDPOINT_ID}/health", headers=AUTH)
        assert health.status_code == 200
        assert set(health.json()) == {"jobs", "workers"}
        assert http.get("/v2/other-endpoint/health", headers=AUTH).status_code == 404
        bad = http.post(f"/v2/{TEST_ENDPOINT_ID}/run", headers=AUTH, json={"prompt": "x"})
        assert bad.status_code == 400 and "input" in bad.json()["error"]
        job = http.post(
            f"/v2/{TEST_ENDPOINT_ID}/run",
            headers=AUTH,
            json={"input": {"seed": 3, "width": 32, "height": 32}},
        ).json()
        assert job["status"] == "IN_QUEUE" and job["id"]
        deadline = time.monotonic() + 10
        while True:
            status = http.get(f"/v2/{TEST_ENDPOINT_ID}/status/{job['id']}", headers=AUTH).json()
            if status["status"] == "COMPLETED" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status["status"] == "COMPLETED"
        assert {"id", "status", "output", "delayTime", "executionTime"} <= set(status)
        assert status["executionTime"] == 50
        missing = http.get(f"/v2/{TEST_ENDPOINT_ID}/status/nope", headers=AUTH)
        assert missing.status_code == 404


def test_behaviour_is_scriptable_over_http(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=5) as http:
        assert (
            http.post(
                "/_control/behaviour", json={"mode": "fail", "error_message": "boom"}
            ).status_code
            == 200
        )
        assert http.post("/_control/behaviour", json={"mode": "nonsense"}).status_code == 400
        assert http.post("/_control/behaviour", json={"colour": "red"}).status_code == 400
        assert (
            http.post(
                "/_control/fail",
                json={"status": 429, "count": 1, "retry_after": 0, "routes": ["run"]},
            ).status_code
            == 200
        )
    client = RunPodClient(
        RunPodConfig(
            base_url=server_url,
            endpoint_id=TEST_ENDPOINT_ID,
            api_key=TEST_API_KEY,
            poll_initial=0.02,
        ),
        sleep=time.sleep,
    )
    from morpheus.providers import ProviderError

    with pytest.raises(ProviderError, match="failed: boom"):
        client.generate({"seed": 1, "width": 32, "height": 32})
    with httpx.Client(base_url=server_url, timeout=5) as http:
        seen = http.get("/_control/requests").json()["requests"]
        assert [r["status"] for r in seen if r["route"] == "run"] == [429, 200]
        http.post("/_control/outage", json={"on": True})
        assert http.get(f"/v2/{TEST_ENDPOINT_ID}/health", headers=AUTH).status_code == 503
        http.post("/_control/reset")
        assert http.get(f"/v2/{TEST_ENDPOINT_ID}/health", headers=AUTH).status_code == 200


def test_answers_can_be_garbled_over_http(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=5) as http:
        garble = {"count": 1, "routes": ["health"]}
        assert http.post("/_control/garble", json=garble).status_code == 200
        with pytest.raises(httpx.DecodingError):
            http.get(f"/v2/{TEST_ENDPOINT_ID}/health", headers=AUTH)
        health = http.get(f"/v2/{TEST_ENDPOINT_ID}/health", headers=AUTH)
        assert health.status_code == 200 and "jobs" in health.json()
        seen = http.get("/_control/requests").json()["requests"]
        assert [r["status"] for r in seen if r["route"] == "health"] == [200, 200]


def test_cancel_stops_a_hanging_job() -> None:
    with FakeRunPod() as fake:
        fake.set_behaviour(mode="hang")
        with httpx.Client(base_url=fake.url, timeout=5, headers=AUTH) as http:
            job = http.post(f"/v2/{fake.endpoint_id}/run", json={"input": {}}).json()
            assert http.get(f"/v2/{fake.endpoint_id}/status/{job['id']}").json()["status"] == (
                "IN_PROGRESS"
            )
            cancelled = http.post(f"/v2/{fake.endpoint_id}/cancel/{job['id']}").json()
            assert cancelled == {"id": job["id"], "status": "CANCELLED"}
            assert http.get(f"/v2/{fake.endpoint_id}/status/{job['id']}").json()["status"] == (
                "CANCELLED"
            )


def test_a_job_that_cannot_render_fails_like_a_handler_error() -> None:
    with FakeRunPod() as fake, httpx.Client(base_url=fake.url, timeout=5, headers=AUTH) as http:
        job = http.post(
            f"/v2/{fake.endpoint_id}/run", json={"input": {"width": 4, "height": 4}}
        ).json()
        status = http.get(f"/v2/{fake.endpoint_id}/status/{job['id']}").json()
        assert status["status"] == "FAILED"
        assert "too small to draw" in status["error"]
