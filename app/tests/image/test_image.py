"""The container image, built with scripts/build-image and run like production: read-only
root file system, tmpfs /tmp, non-root user, the API and a worker against the machine's
PostgreSQL and Redis (``--network host``). Skips, saying why, when no Docker engine answers.

``MORPHEUS_TEST_IMAGE`` names an already built image to test instead of building one;
``MORPHEUS_TEST_BASE_IMAGE`` (default morpheus/debian:bookworm) is the base to build on.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from morpheus.db import schema

pytestmark = [pytest.mark.docker, pytest.mark.slow]

APP_DIR = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = APP_DIR / "scripts" / "build-image"
BASE_IMAGE = os.environ.get("MORPHEUS_TEST_BASE_IMAGE", "morpheus/debian:bookworm")
TEST_SECRET_KEY = "test-only-secret-key-for-the-image-test-0123456789"
API_HOST = "api.morpheus.localhost"
# The API container listens here only, as on a host whose private address is in
# MORPHEUS_BIND: all of 127.0.0.0/8 is local, yet nothing answers on 127.0.0.1.
BIND_HOST = "127.0.0.2"
NOVEL = (
    "Chapter 1: The Lighthouse\n\n"
    'Mara climbed the stairs of the lighthouse. "Is anyone up there?" she called.\n\n'
    'Tom leaned over the rail. "Only the gulls and me," he said, laughing.\n\n'
    "Chapter 2: The Storm\n\n"
    "The storm came in from the sea. Mara lit the great lamp.\n\n"
    '"We keep it burning until morning," Tom said.\n'
)


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result


def container_logs(name: str) -> str:
    result = docker("logs", "--tail", "60", name, check=False)
    return f"--- logs of {name} ---\n{result.stdout[-4000:]}{result.stderr[-4000:]}"


def health_log(name: str) -> str:
    result = docker("inspect", "--format", "{{json .State.Health}}", name, check=False)
    return f"--- health of {name} ---\n{result.stdout[-3000:]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The image under test: MORPHEUS_TEST_IMAGE, or a fresh build from this tree."""
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        reason = None if info.returncode == 0 else (info.stderr.strip() or "docker info failed")
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"docker info failed: {exc}"
    if reason:
        print(f"\nskipping the image tests: no Docker engine answers: {reason}")
        pytest.skip(f"no Docker engine answers: {reason}")

    prebuilt = os.environ.get("MORPHEUS_TEST_IMAGE")
    if prebuilt:
        docker("image", "inspect", prebuilt)
        yield prebuilt
        return

    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        message = f"base image {BASE_IMAGE} is not built (scripts/harness images builds it)"
        print(f"\nskipping the image tests: {message}")
        pytest.skip(message)
    release_id = f"test-{uuid.uuid4().hex[:10]}"
    build = subprocess.run(
        [str(BUILD_SCRIPT), "--tag", "morpheus/app-test", "--release-id", release_id],
        env={**os.environ, "BASE_IMAGE": BASE_IMAGE},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, f"build-image failed:\n{build.stderr[-5000:]}"
    reference = build.stdout.strip().splitlines()[-1]
    assert reference == f"morpheus/app-test:{release_id}"
    try:
        yield reference
    finally:
        docker("rmi", "--force", reference, check=False)


def test_image_metadata_and_user(image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["Entrypoint"] == ["morpheus"]
    assert config["Cmd"] == ["serve"]
    assert config["User"] == "morpheus:morpheus"
    assert config["Healthcheck"]["Test"] == ["CMD", "python3", "-m", "morpheus.healthcheck"]
    assert "/var/lib/morpheus" in config["Volumes"]
    uid = docker("run", "--rm", "--read-only", "--entrypoint", "id", image, "-u").stdout.strip()
    assert uid == "10001"
    assert docker("run", "--rm", "--read-only", image, "--version").stdout.startswith("morpheus ")


def test_invalid_settings_stop_the_container_with_a_clear_message(image: str) -> None:
    result = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", image, "serve", check=False)
    assert result.returncode == 2
    assert "MORPHEUS_DATABASE_URL: is required but not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_check_fails_with_one_line_when_nothing_answers(image: str) -> None:
    bind = f"{BIND_HOST}:{free_port()}"
    result = docker(
        "run", "--rm", "--read-only", "--network", "host", "-e", f"MORPHEUS_BIND={bind}",
        "--entrypoint", "python3", image, "-m", "morpheus.healthcheck", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"healthcheck: http://{bind}/health/live: ConnectionRefusedError"
    )
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_api_and_worker_containers_complete_a_comic(
    image: str, empty_database_url: str, redis_url: str
) -> None:
    run_id = uuid.uuid4().hex[:10]
    port = free_port()
    volume = f"morpheus-test-{run_id}"
    env = {
        "MORPHEUS_DATABASE_URL": empty_database_url,
        "MORPHEUS_REDIS_URL": redis_url,
        "MORPHEUS_SECRET_KEY": TEST_SECRET_KEY,
        "MORPHEUS_ENVIRONMENT": "test",
        "MORPHEUS_QUEUE_NAME": f"test-image-{run_id}",
        "MORPHEUS_API_HOST": API_HOST,
        "MORPHEUS_BIND": f"{BIND_HOST}:{port}",
        "MORPHEUS_WEB_CONCURRENCY": "2",
        "MORPHEUS_WORKER_METRICS_PORT": "0",
        "MORPHEUS_SHUTDOWN_GRACE_SECONDS": "10",
    }
    env_args = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    hardened = ["--read-only", "--tmpfs", "/tmp", "--network", "host", "--cap-drop", "ALL"]
    hardened += ["--security-opt", "no-new-privileges", "-v", f"{volume}:/var/lib/morpheus"]
    names = {role: f"morpheus-test-{run_id}-{role}" for role in ("api", "worker")}
    docker("volume", "create", volume)
    try:
        pending = docker("run", "--rm", *hardened, *env_args, image, "db", "pending")
        assert pending.stdout.splitlines() == schema.pending_revisions(empty_database_url)
        assert pending.stdout != ""
        migrate = docker("run", "--rm", *hardened, *env_args, image, "db", "upgrade")
        assert "(head)" in migrate.stdout, migrate.stderr
        pending = docker("run", "--rm", *hardened, *env_args, image, "db", "pending")
        assert pending.stdout == "", pending.stderr
        key = docker("run", "--rm", *hardened, *env_args, image, "create-api-key", "image test")
        api_key = key.stdout.strip()
        assert api_key.startswith("mph_"), key.stderr

        docker(
            "run", "-d", "--name", names["api"], "--health-interval", "2s",
            "--health-start-period", "5s", *hardened, *env_args, image,
        )  # fmt: skip
        # The image's health check probes the web service; a worker has none to probe.
        docker(
            "run", "-d", "--name", names["worker"], "--no-healthcheck",
            *hardened, *env_args, image, "worker",
        )  # fmt: skip

        base = f"http://{BIND_HOST}:{port}"
        deadline = time.monotonic() + 90
        ready_status = None
        while time.monotonic() < deadline:
            try:
                ready_status = httpx.get(f"{base}/health/ready", timeout=5).status_code
                if ready_status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        assert ready_status == 200, container_logs(names["api"])

        headers = {"Host": API_HOST, "Authorization": f"Bearer {api_key}"}
        submitted = httpx.post(
            f"{base}/v1/comics",
            headers=headers,
            json={"title": "The Lighthouse", "text": NOVEL},
            timeout=30,
        )
        assert submitted.status_code == 202, submitted.text
        status_url = base + submitted.json()["status_url"]

        deadline = time.monotonic() + 240
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            body = httpx.get(status_url, headers=headers, timeout=10).json()
            if body["status"] in {"completed", "failed", "cancelled"}:
                break
            time.sleep(1)
        assert body.get("status") == "completed", (body, container_logs(names["worker"]))
        assert isinstance(body["page_count"], int) and body["page_count"] >= 1

        # The API container serves what the worker container wrote to the shared volume.
        pdf = httpx.get(f"{status_url}.pdf", headers=headers, timeout=30)
        assert pdf.status_code == 200, pdf.text[:500]
        assert pdf.content.startswith(b"%PDF")

        deadline = time.monotonic() + 60
        health = ""
        while time.monotonic() < deadline:
            health = docker(
                "inspect", "--format", "{{.State.Health.Status}}", names["api"]
            ).stdout.strip()
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy", (health_log(names["api"]), container_logs(names["api"]))

        # SIGTERM: the worker drains and exits cleanly, within its grace period.
        docker("stop", "--time", "30", names["worker"], timeout=60)
        state = json.loads(docker("inspect", names["worker"]).stdout)[0]["State"]
        assert state["ExitCode"] == 0, container_logs(names["worker"])
        docker("stop", "--time", "30", names["api"], timeout=60)
        state = json.loads(docker("inspect", names["api"]).stdout)[0]["State"]
        assert state["ExitCode"] == 0, container_logs(names["api"])

        # The deployment's smoke test removes its comic again: rows and files in the volume.
        comic_id = submitted.json()["id"]
        deleted = docker("run", "--rm", *hardened, *env_args, image, "delete-comic", comic_id)
        match = re.fullmatch(rf"deleted comic {comic_id} \((\d+) files\)\n", deleted.stdout)
        assert match is not None, (deleted.stdout, deleted.stderr)
        # Its pages, its panels (one at least), the PDF and the CBZ.
        assert int(match.group(1)) >= body["page_count"] + 3
        again = docker(
            "run", "--rm", *hardened, *env_args, image, "delete-comic", comic_id, check=False
        )
        assert again.returncode == 1
        assert again.stderr == f"morpheus: error: comic {comic_id} does not exist\n"
    finally:
        for name in names.values():
            docker("rm", "--force", name, check=False)
        docker("volume", "rm", "--force", volume, check=False)
