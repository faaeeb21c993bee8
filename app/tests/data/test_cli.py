"""The ``morpheus`` command, run as a real subprocess against the real PostgreSQL/Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from morpheus.db import repository, schema
from morpheus.settings import Settings
from sqlalchemy.orm import Session

MORPHEUS = shutil.which("morpheus", path=str(Path(sys.executable).parent)) or "morpheus"
TEST_SECRET_KEY = "test-only-secret-key-for-cli-tests-0123456789"


def base_env(tmp_path: Path) -> dict[str, str]:
    """The outer environment without MORPHEUS_* variables, and an empty secrets dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MORPHEUS_")}
    secrets = tmp_path / "cli-secrets"
    secrets.mkdir(exist_ok=True)
    env["MORPHEUS_SECRETS_DIR"] = str(secrets)
    return env


def app_env(tmp_path: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = base_env(tmp_path)
    env.update(
        {
            "MORPHEUS_DATABASE_URL": database_url,
            "MORPHEUS_REDIS_URL": redis_url,
            "MORPHEUS_SECRET_KEY": TEST_SECRET_KEY,
            "MORPHEUS_ENVIRONMENT": "test",
            "MORPHEUS_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


def morpheus(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MORPHEUS, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


# --- settings errors --------------------------------------------------------------------


def test_missing_settings_exit_2_with_one_line_each(tmp_path: Path) -> None:
    result = morpheus(["db", "current"], base_env(tmp_path))
    assert_clean_failure(result, 2)
    assert result.stderr.splitlines() == [
        "morpheus: invalid setting: MORPHEUS_DATABASE_URL: is required but not set",
        "morpheus: invalid setting: MORPHEUS_REDIS_URL: is required but not set",
        "morpheus: invalid setting: MORPHEUS_SECRET_KEY: is required but not set",
    ]
    assert result.stdout == ""


def test_invalid_setting_is_named(tmp_path: Path, database_url: str, redis_url: str) -> None:
    env = app_env(tmp_path, database_url, redis_url, MORPHEUS_JOB_ATTEMPTS="many")
    env["MORPHEUS_SECRET_KEY"] = "short-test-only"
    result = morpheus(["worker"], env)
    assert_clean_failure(result, 2)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("morpheus: invalid setting: MORPHEUS_SECRET_KEY: ")
    assert lines[1].startswith("morpheus: invalid setting: MORPHEUS_JOB_ATTEMPTS: ")
    assert "short-test-only" not in result.stderr


def test_unreachable_database_is_one_clear_line(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing"
    result = morpheus(["db", "upgrade"], app_env(tmp_path, url, redis_url))
    assert_clean_failure(result, 1)
    assert result.stderr.startswith("morpheus: error: the database is not reachable:")


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = morpheus(["db", "sideways"], base_env(tmp_path))
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# --- db ---------------------------------------------------------------------------------


def test_db_upgrade_downgrade_current(
    tmp_path: Path, empty_database_url: str, redis_url: str
) -> None:
    env = app_env(tmp_path, empty_database_url, redis_url)
    head = schema.head_revision()

    result = morpheus(["db", "current"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database revision: none (empty database; head is {head})"

    result = morpheus(["db", "upgrade"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database revision: {head} (head)"
    assert f"Running upgrade  -> {head}" in result.stderr
    assert schema.current_revision(empty_database_url) == head

    result = morpheus(["db", "downgrade", "base"], env)
    assert result.returncode == 0, result.stderr
    assert schema.current_revision(empty_database_url) is None

    result = morpheus(["db", "upgrade", head or "head"], env)
    assert result.returncode == 0, result.stderr
    assert morpheus(["db", "current"], env).stdout.strip() == f"database revision: {head} (head)"

    result = morpheus(["db", "downgrade", "nonexistent"], env)
    assert_clean_failure(result, 1)
    assert "nonexistent" in result.stderr
    assert schema.current_revision(empty_database_url) == head


# --- users and API keys -----------------------------------------------------------------


def test_create_user_from_password_file_and_stdin(
    tmp_path: Path, database_url: str, redis_url: str, db_session: Session
) -> None:
    env = app_env(tmp_path, database_url, redis_url)
    first = f"ed-{uuid.uuid4().hex[:8]}"
    password_file = tmp_path / "password"
    password_file.write_text("file password 123\n")
    result = morpheus(["create-user", first, "--password-file", str(password_file)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"created user {first} (")
    assert "file password" not in result.stdout + result.stderr
    assert repository.verify_user(db_session, first, "file password 123") is not None
    assert repository.verify_user(db_session, first, "file password 124") is None

    second = f"ed-{uuid.uuid4().hex[:8]}"
    result = morpheus(["create-user", second], env, stdin="stdin password 456\n")
    assert result.returncode == 0, result.stderr
    assert repository.verify_user(db_session, second, "stdin password 456") is not None

    duplicate = morpheus(["create-user", first], env, stdin="another password\n")
    assert_clean_failure(duplicate, 1)
    assert duplicate.stderr.strip() == f"morpheus: error: username '{first}' is already taken"
    assert repository.verify_user(db_session, first, "file password 123") is not None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--password-file", "/nonexistent/password"], None, "cannot read password file"),
        ([], "short\n", "password must be at least 8 characters"),
        ([], "", "no password given"),
    ],
)
def test_create_user_refuses_bad_passwords(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    db_session: Session,
    args: list[str],
    stdin: str | None,
    message: str,
) -> None:
    name = f"ed-{uuid.uuid4().hex[:8]}"
    result = morpheus(
        ["create-user", name, *args], app_env(tmp_path, database_url, redis_url), stdin=stdin or ""
    )
    assert_clean_failure(result, 1)
    assert message in result.stderr
    assert repository.verify_user(db_session, name, "short") is None


def test_create_api_key_prints_it_once(
    tmp_path: Path, database_url: str, redis_url: str, db_session: Session
) -> None:
    result = morpheus(["create-api-key", "ci pipeline"], app_env(tmp_path, database_url, redis_url))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # stdout holds only the key, ready for a pipe
    key = lines[0]
    assert key.startswith("mph_")
    assert "shown only this once" in result.stderr
    assert key not in result.stderr
    record = repository.verify_api_key(db_session, key)
    assert record is not None and record.name == "ci pipeline"
    assert record.key_hash != key


# --- long-running commands ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test; killed if the test left them running."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def start(
    args: list[str], env: dict[str, str], log: Path, running: list[subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    handle = log.open("w")
    process = subprocess.Popen(
        [MORPHEUS, *args], env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
    )
    handle.close()
    running.append(process)
    return process


def stop(process: subprocess.Popen[str], log: Path, timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not stop within {timeout}s of SIGTERM:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_serve_answers_health_and_stops_on_sigterm(
    tmp_path: Path, settings: Settings, running: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    env = app_env(
        tmp_path,
        settings.database_url,
        settings.redis_url,
        MORPHEUS_QUEUE_NAME=settings.queue_name,
        MORPHEUS_STORAGE_PATH=str(settings.storage_path),
        MORPHEUS_SHUTDOWN_GRACE_SECONDS="5",
    )
    log = tmp_path / "serve.log"
    process = start(["serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"], env, log, running)
    deadline = time.monotonic() + 60
    live = ready = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            live = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2)
            ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
            break
        except httpx.TransportError:
            time.sleep(0.3)
    assert live is not None and ready is not None, f"no answer:\n{log.read_text()[-3000:]}"
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert stop(process, log) == 0


@pytest.mark.slow
def test_worker_completes_a_comic_and_drains_on_sigterm(
    tmp_path: Path,
    settings: Settings,
    db_session: Session,
    running: list[subprocess.Popen[str]],
) -> None:
    from morpheus.queue.client import enqueue_comic

    env = app_env(
        tmp_path,
        settings.database_url,
        settings.redis_url,
        MORPHEUS_QUEUE_NAME=settings.queue_name,
        MORPHEUS_STORAGE_PATH=str(settings.storage_path),
        MORPHEUS_WORKER_METRICS_PORT="0",
        MORPHEUS_SHUTDOWN_GRACE_SECONDS="5",
    )
    log = tmp_path / "worker.log"
    process = start(["worker"], env, log, running)
    text = (
        'Chapter 1\n\nMara opened the door. "Who is there?" she asked.\n\n'
        'The wind answered. Tom stepped out of the rain. "Only me," he said.\n'
    )
    comic = repository.create_comic(db_session, title="The Door", source_text=text)
    asyncio.run(enqueue_comic(settings, str(comic.id)))
    deadline = time.monotonic() + 120
    status = "queued"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        current = repository.get_comic(db_session, comic.id)
        assert current is not None
        status = current.status
        if status in {"completed", "failed"}:
            break
        time.sleep(0.5)
    assert status == "completed", f"comic is {status}:\n{log.read_text()[-3000:]}"
    done = repository.get_comic(db_session, comic.id)
    assert done is not None and (done.page_count or 0) >= 1
    assert len(repository.list_pages(db_session, comic.id)) == done.page_count
    assert stop(process, log) == 0
