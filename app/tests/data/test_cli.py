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
from alembic.script import ScriptDirectory
from morpheus.db import api_keys, comics, schema, users
from morpheus.db.models import ApiKey, Comic
from morpheus.settings import Settings
from morpheus.storage import LocalStorage, page_key, panel_key, pdf_key
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

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
    assert "Running upgrade  -> 0001" in result.stderr  # from the empty database
    assert f"-> {head}, " in result.stderr
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


def all_revisions() -> list[str]:
    """Every packaged revision, oldest first."""
    script = ScriptDirectory.from_config(schema.alembic_config(""))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def test_db_pending_lists_what_upgrade_would_apply(
    tmp_path: Path, empty_database_url: str, redis_url: str
) -> None:
    env = app_env(tmp_path, empty_database_url, redis_url)
    revisions = all_revisions()
    assert revisions[0] == "0001" and revisions[-1] == schema.head_revision()

    result = morpheus(["db", "pending"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(f"{revision}\n" for revision in revisions)
    assert result.stderr == ""
    assert schema.current_revision(empty_database_url) is None  # asking changes nothing

    assert morpheus(["db", "upgrade"], env).returncode == 0
    result = morpheus(["db", "pending"], env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    assert morpheus(["db", "downgrade", "base"], env).returncode == 0
    result = morpheus(["db", "pending", revisions[0]], env)
    assert (result.returncode, result.stdout) == (0, f"{revisions[0]}\n"), result.stderr

    result = morpheus(["db", "pending", "nonexistent"], env)
    assert_clean_failure(result, 1)
    assert result.stderr == "morpheus: error: No such revision or branch 'nonexistent'\n"
    assert result.stdout == ""


def test_db_pending_refuses_a_revision_it_does_not_know(
    tmp_path: Path, empty_database_url: str, redis_url: str
) -> None:
    """A database migrated by a newer release: exit 1, so no deployment goes on blindly."""
    schema.upgrade(empty_database_url)
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    result = morpheus(["db", "pending"], app_env(tmp_path, empty_database_url, redis_url))
    assert_clean_failure(result, 1)
    assert result.stdout == ""
    assert result.stderr == (
        "morpheus: error: the database is at revision 9999, which these migrations do not "
        "know (did a newer release migrate it?)\n"
    )


def test_db_pending_with_the_database_unreachable(tmp_path: Path, redis_url: str) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    result = morpheus(["db", "pending"], app_env(tmp_path, url, redis_url))
    assert_clean_failure(result, 1)
    assert result.stdout == ""
    assert result.stderr.startswith("morpheus: error: the database is not reachable:")


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
    assert users.verify_user(db_session, first, "file password 123") is not None
    assert users.verify_user(db_session, first, "file password 124") is None

    second = f"ed-{uuid.uuid4().hex[:8]}"
    result = morpheus(["create-user", second], env, stdin="stdin password 456\n")
    assert result.returncode == 0, result.stderr
    assert users.verify_user(db_session, second, "stdin password 456") is not None

    duplicate = morpheus(["create-user", first], env, stdin="another password\n")
    assert_clean_failure(duplicate, 1)
    assert duplicate.stderr.strip() == f"morpheus: error: username '{first}' is already taken"
    assert users.verify_user(db_session, first, "file password 123") is not None


def test_create_user_if_missing_leaves_an_existing_user_alone(
    tmp_path: Path, database_url: str, redis_url: str, db_session: Session
) -> None:
    env = app_env(tmp_path, database_url, redis_url)
    name = f"ops-{uuid.uuid4().hex[:8]}"
    first = tmp_path / "first"
    first.write_text("first password 123\n")
    second = tmp_path / "second"
    second.write_text("second password 456\n")

    result = morpheus(["create-user", name, "--password-file", str(first), "--if-missing"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"created user {name} (")
    user = users.find_user(db_session, name)
    assert user is not None

    result = morpheus(["create-user", name, "--password-file", str(second), "--if-missing"], env)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"user {name} exists\n", "")
    # Untouched: same record, same password.
    db_session.expire_all()
    assert users.verify_user(db_session, name, "first password 123") is not None
    assert users.verify_user(db_session, name, "second password 456") is None
    assert users.find_user(db_session, name).id == user.id  # type: ignore[union-attr]

    # No password is read for an existing user: neither the missing file nor stdin.
    missing = tmp_path / "gone"
    result = morpheus(["create-user", name, "--password-file", str(missing), "--if-missing"], env)
    assert (result.returncode, result.stdout) == (0, f"user {name} exists\n"), result.stderr
    result = morpheus(["create-user", name, "--if-missing"], env, stdin="")
    assert (result.returncode, result.stdout) == (0, f"user {name} exists\n"), result.stderr

    # Without the flag an existing user is still an error.
    result = morpheus(["create-user", name, "--password-file", str(second)], env)
    assert_clean_failure(result, 1)
    assert result.stderr == f"morpheus: error: username '{name}' is already taken\n"
    assert result.stdout == ""


def test_create_user_if_missing_still_checks_a_new_users_password(
    tmp_path: Path, database_url: str, redis_url: str, db_session: Session
) -> None:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    password = tmp_path / "password"
    password.write_text("short\n")
    result = morpheus(
        ["create-user", name, "--password-file", str(password), "--if-missing"],
        app_env(tmp_path, database_url, redis_url),
    )
    assert_clean_failure(result, 1)
    assert result.stderr == "morpheus: error: password must be at least 8 characters\n"
    assert users.find_user(db_session, name) is None


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
    assert users.verify_user(db_session, name, "short") is None


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
    record = api_keys.verify_api_key(db_session, key)
    assert record is not None and record.name == "ci pipeline"
    assert record.key_hash != key


def test_revoke_api_key_revokes_every_active_key_of_that_name(
    tmp_path: Path, database_url: str, redis_url: str, db_session: Session
) -> None:
    env = app_env(tmp_path, database_url, redis_url)
    name = f"smoke test {uuid.uuid4().hex[:8]}"
    keys = [api_keys.create_api_key(db_session, name) for _ in range(3)]
    earlier = api_keys.revoke_api_key(db_session, keys[2].api_key.id).revoked_at
    other = api_keys.create_api_key(db_session, f"other {uuid.uuid4().hex[:8]}")

    result = morpheus(["revoke-api-key", name], env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"revoked 2 API key(s) named {name}\n"
    for created in keys:
        assert api_keys.verify_api_key(db_session, created.key) is None
    assert api_keys.verify_api_key(db_session, other.key) is not None
    db_session.expire_all()
    assert db_session.get(ApiKey, keys[2].api_key.id).revoked_at == earlier  # type: ignore[union-attr]

    again = morpheus(["revoke-api-key", name], env)
    assert (again.returncode, again.stdout) == (0, f"revoked 0 API key(s) named {name}\n")
    unknown = morpheus(["revoke-api-key", "nobody has this name"], env)
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stdout == "revoked 0 API key(s) named nobody has this name\n"


@pytest.mark.parametrize("name", ["", "  ", "x" * 101])
def test_revoke_api_key_refuses_a_bad_name(
    tmp_path: Path, database_url: str, redis_url: str, name: str
) -> None:
    result = morpheus(["revoke-api-key", name], app_env(tmp_path, database_url, redis_url))
    assert_clean_failure(result, 1)
    assert result.stderr == "morpheus: error: API key name must be 1-100 characters\n"
    assert result.stdout == ""


# --- comics -------------------------------------------------------------------------------


UNKNOWN_COMIC = "00000000-0000-4000-8000-000000000000"


def store_comic_files(storage: LocalStorage, comic_id: uuid.UUID) -> list[str]:
    keys = [panel_key(comic_id, 1), panel_key(comic_id, 2), page_key(comic_id, 1)]
    keys.append(pdf_key(comic_id))
    for key in keys:
        storage.put(key, b"data")
    return keys


def comic_in(status: str, session: Session) -> Comic:
    comic = comics.create_comic(session, title="Smoke", source_text="One two three.")
    if status == "queued":
        return comic
    comic = comics.start_comic(session, comic.id)
    if status == "completed":
        return comics.complete_comic(session, comic.id, page_count=1)
    if status == "failed":
        return comics.fail_comic(session, comic.id, "provider timed out")
    if status == "cancelled":
        return comics.cancel_comic(session, comic.id)
    return comic


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_delete_comic_removes_rows_and_files(
    tmp_path: Path, settings: Settings, db_session: Session, status: str
) -> None:
    storage = LocalStorage(settings.storage_path)
    comic = comic_in(status, db_session)
    comics.upsert_page(db_session, comic.id, 1, page_key(comic.id, 1), 10, 10)
    store_comic_files(storage, comic.id)
    neighbour = comic_in("completed", db_session)
    kept = store_comic_files(storage, neighbour.id)
    env = app_env(
        tmp_path,
        settings.database_url,
        settings.redis_url,
        MORPHEUS_STORAGE_PATH=str(settings.storage_path),
    )

    result = morpheus(["delete-comic", str(comic.id)], env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"deleted comic {comic.id} (4 files)\n"
    assert comics.get_comic(db_session, comic.id) is None
    assert comics.list_pages(db_session, comic.id) == []
    assert storage.list_keys(f"comics/{comic.id}/") == []
    assert not (settings.storage_path / "comics" / str(comic.id)).exists()
    # The neighbour keeps its record and its files.
    assert comics.get_comic(db_session, neighbour.id) is not None
    assert storage.list_keys(f"comics/{neighbour.id}/") == sorted(kept)

    again = morpheus(["delete-comic", str(comic.id)], env)
    assert_clean_failure(again, 1)
    assert again.stderr == f"morpheus: error: comic {comic.id} does not exist\n"


def test_delete_comic_without_files_and_in_another_spelling(
    tmp_path: Path, settings: Settings, db_session: Session
) -> None:
    comic = comic_in("cancelled", db_session)
    env = app_env(
        tmp_path,
        settings.database_url,
        settings.redis_url,
        MORPHEUS_STORAGE_PATH=str(settings.storage_path),
    )
    result = morpheus(["delete-comic", comic.id.hex.upper()], env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"deleted comic {comic.id} (0 files)\n"
    assert comics.get_comic(db_session, comic.id) is None


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_comic_refuses_a_comic_at_work(
    tmp_path: Path, settings: Settings, db_session: Session, status: str
) -> None:
    storage = LocalStorage(settings.storage_path)
    comic = comic_in(status, db_session)
    keys = store_comic_files(storage, comic.id)
    env = app_env(
        tmp_path,
        settings.database_url,
        settings.redis_url,
        MORPHEUS_STORAGE_PATH=str(settings.storage_path),
    )
    result = morpheus(["delete-comic", str(comic.id)], env)
    assert_clean_failure(result, 1)
    assert result.stdout == ""
    assert result.stderr == (
        f"morpheus: error: comic {comic.id} is {status}: cancel it first, then delete it\n"
    )
    assert comics.get_comic(db_session, comic.id).status == status  # type: ignore[union-attr]
    assert storage.list_keys(f"comics/{comic.id}/") == sorted(keys)


@pytest.mark.parametrize(
    ("comic_id", "message"),
    [
        ("not-a-uuid", "'not-a-uuid' is not a comic id (a UUID)"),
        ("", "'' is not a comic id (a UUID)"),
        (UNKNOWN_COMIC, f"comic {UNKNOWN_COMIC} does not exist"),
    ],
)
def test_delete_comic_with_a_malformed_or_unknown_id(
    tmp_path: Path, database_url: str, redis_url: str, comic_id: str, message: str
) -> None:
    result = morpheus(["delete-comic", comic_id], app_env(tmp_path, database_url, redis_url))
    assert_clean_failure(result, 1)
    assert result.stderr == f"morpheus: error: {message}\n"
    assert result.stdout == ""


def test_delete_comic_keeps_the_comic_when_its_files_cannot_be_deleted(
    tmp_path: Path, settings: Settings, db_session: Session
) -> None:
    comic = comic_in("completed", db_session)
    comics.upsert_page(db_session, comic.id, 1, page_key(comic.id, 1), 10, 10)
    not_a_directory = tmp_path / "storage-file"
    not_a_directory.write_text("")
    env = app_env(
        tmp_path,
        settings.database_url,
        settings.redis_url,
        MORPHEUS_STORAGE_PATH=str(not_a_directory),
    )
    result = morpheus(["delete-comic", str(comic.id)], env)
    assert_clean_failure(result, 1)
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"morpheus: error: cannot delete the files of comic {comic.id} ("
    )
    assert result.stderr.endswith("); the comic is kept\n")
    assert comics.get_comic(db_session, comic.id) is not None
    assert len(comics.list_pages(db_session, comic.id)) == 1


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
        MORPHEUS_RECONCILER_INTERVAL_SECONDS="0",  # the database holds other tests' comics
    )
    log = tmp_path / "worker.log"
    process = start(["worker"], env, log, running)
    text = (
        'Chapter 1\n\nMara opened the door. "Who is there?" she asked.\n\n'
        'The wind answered. Tom stepped out of the rain. "Only me," he said.\n'
    )
    comic = comics.create_comic(db_session, title="The Door", source_text=text)
    asyncio.run(enqueue_comic(settings, str(comic.id)))
    deadline = time.monotonic() + 120
    status = "queued"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"worker exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        current = comics.get_comic(db_session, comic.id)
        assert current is not None
        status = current.status
        if status in {"completed", "failed"}:
            break
        time.sleep(0.5)
    assert status == "completed", f"comic is {status}:\n{log.read_text()[-3000:]}"
    done = comics.get_comic(db_session, comic.id)
    assert done is not None and (done.page_count or 0) >= 1
    assert len(comics.list_pages(db_session, comic.id)) == done.page_count
    assert stop(process, log) == 0
