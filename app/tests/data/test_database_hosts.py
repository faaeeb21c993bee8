"""Database URLs of several hosts (every postgres host's PgBouncer, the primary's first),
against the machine's PostgreSQL behind a first host that is dead: the engines, reads
through the ReadRouter, the migrations and the ``morpheus`` command fall back to the
next host, a silent host costs one ``connect_timeout``, and no log line or message shows
the URL's password. A URL of one host works as before."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hot_standby import HotStandby
from morpheus.database_url import Endpoints, endpoints
from morpheus.db import comics, schema
from morpheus.db.session import connect_args, make_engine
from morpheus.db.standby import ReadRouter
from several_hosts import (
    CONNECT_TIMEOUT,
    TEST_URL_PASSWORD,
    DeadHost,
    dead_host,
    several_hosts,
)
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

MORPHEUS = shutil.which("morpheus", path=str(Path(sys.executable).parent)) or "morpheus"
TEST_SECRET_KEY = "test-only-secret-key-for-several-hosts-0123456789"
# psycopg's line of each attempt (the port quoted when the URL gave several).
ATTEMPT = re.compile(r"connection attempt: host: '[^']*', port: '?(\d+)'?")


@pytest.fixture
def logs(log_buffer: io.StringIO) -> Iterator[io.StringIO]:
    """Every log line, ours and the libraries', from DEBUG: psycopg's too (it keeps its own
    at WARNING unless told), which name each attempt to connect."""
    psycopg_logger = logging.getLogger("psycopg")
    level = psycopg_logger.level
    psycopg_logger.setLevel(logging.DEBUG)
    yield log_buffer
    psycopg_logger.setLevel(level)


def port_of(url: str) -> int:
    return make_url(url).port or 5432


def timed_server_port(engine: Engine) -> tuple[int, float]:
    """The port of the server a new connection of ``engine`` reached, and how long it took."""
    started = time.monotonic()
    with engine.connect() as connection:
        port = int(connection.execute(text("SELECT inet_server_port()")).scalar_one())
    return port, time.monotonic() - started


def attempted_ports(logs: io.StringIO) -> list[int]:
    """The ports psycopg tried to connect to, in order, as its log lines name them."""
    return [int(port) for port in ATTEMPT.findall(logs.getvalue())]


def assert_cost(dead: DeadHost, seconds: float) -> None:
    """A refused host costs next to nothing; a silent one the URL's connect_timeout."""
    if dead.kind == "refused":
        assert seconds < 1.5, seconds
    else:
        assert CONNECT_TIMEOUT - 0.1 < seconds < CONNECT_TIMEOUT + 2, seconds


def command_env(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MORPHEUS_")}
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    env.update(
        {
            "MORPHEUS_SECRETS_DIR": str(secrets),
            "MORPHEUS_DATABASE_URL": database_url,
            "MORPHEUS_REDIS_URL": redis_url,
            "MORPHEUS_SECRET_KEY": TEST_SECRET_KEY,
            "MORPHEUS_ENVIRONMENT": "test",
        }
    )
    return env


def morpheus(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MORPHEUS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


# --- reading a URL ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://u:pw@db:6432/morpheus", Endpoints(("db:6432",), None)),
        ("postgresql+psycopg://u@127.0.0.1/morpheus", Endpoints(("127.0.0.1",), None)),
        ("postgresql+psycopg:///morpheus", Endpoints(("",), None)),
        (
            "postgresql+psycopg://u:pw@/morpheus?host=a:6432&host=b:6432&connect_timeout=3",
            Endpoints(("a:6432", "b:6432"), 3),
        ),
        ("postgresql+psycopg://u:pw@/morpheus?host=a,b&port=1,2", Endpoints(("a:1", "b:2"), None)),
        ("postgresql+psycopg://u:pw@/morpheus?host=a&host=b:2", Endpoints(("a", "b:2"), None)),
        ("postgresql+psycopg://u:pw@/morpheus?host=a:6432", Endpoints(("a:6432",), None)),
    ],
)
def test_the_hosts_of_a_url_in_the_order_psycopg_tries_them(url: str, expected: Endpoints) -> None:
    assert endpoints(url) == expected


@pytest.mark.parametrize(
    ("hosts", "url_timeout", "attempt", "fallback"),
    [
        (("a:6432",), None, 5, 0),
        (("a:6432", "b:6432"), 3, 3, 3),
        (("a:6432", "b:6432", "c:6432"), None, 5, 10),
        # psycopg gives an attempt 2 s at least, whatever the URL says.
        (("a:6432", "b:6432"), 1, 2, 2),
    ],
)
def test_what_the_hosts_before_the_last_may_cost_a_new_connection(
    hosts: tuple[str, ...], url_timeout: int | None, attempt: int, fallback: int
) -> None:
    found = Endpoints(hosts, url_timeout)
    assert found.attempt_seconds(5) == attempt
    assert found.fallback_seconds(5) == fallback


def test_the_urls_connect_timeout_wins_over_the_engines() -> None:
    """SQLAlchemy lets connect_args win over the URL: the engine leaves the URL's alone."""
    one = "postgresql+psycopg://u@db:6432/morpheus"
    assert connect_args(one, 7)["connect_timeout"] == 7
    assert "connect_timeout" not in connect_args(f"{one}?connect_timeout=3", 7)


# --- the engine and the reads -------------------------------------------------------------


def test_the_engine_falls_back_past_a_dead_first_host(
    database_url: str, dead: DeadHost, logs: io.StringIO
) -> None:
    # The engine's own timeout is long: the URL's bounds the attempt on the silent host.
    engine = make_engine(several_hosts(database_url, dead.address), connect_timeout=30)
    try:
        port, seconds = timed_server_port(engine)
        # A pooled connection costs nothing more.
        _, again = timed_server_port(engine)
    finally:
        engine.dispose()
    assert port == port_of(database_url)
    assert attempted_ports(logs) == [dead.port, port]
    assert_cost(dead, seconds)
    assert again < 0.5, again
    assert TEST_URL_PASSWORD not in logs.getvalue()


def test_a_url_of_one_host_connects_as_before(database_url: str, logs: io.StringIO) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        port, _ = timed_server_port(engine)
    finally:
        engine.dispose()
    assert port == port_of(database_url)
    assert attempted_ports(logs) == [port]


def test_reads_through_the_router_fall_back_past_a_dead_first_host(
    database_url: str, dead: DeadHost, db_session: Session
) -> None:
    """Without a standby every read is the primary's, through the URL of several hosts."""
    comic = comics.create_comic(db_session, title="Past the dead host", source_text="a b c")
    engine = make_engine(several_hosts(database_url, dead.address))
    router = ReadRouter(engine)
    try:
        started = time.monotonic()
        found = router.run(lambda session: comics.get_comic(session, comic.id))
        seconds = time.monotonic() - started
    finally:
        router.close()
        engine.dispose()
    assert found is not None and found.title == "Past the dead host"
    assert_cost(dead, seconds)


def test_reads_reach_the_standby_past_a_dead_first_host(
    database_url: str, standby: HotStandby, db_session: Session
) -> None:
    """The read URL of several hosts, the first silent: reads are the standby's."""
    comic = comics.create_comic(db_session, title="On the standby", source_text="a b c")
    standby.catch_up()
    primary = make_engine(database_url)
    with dead_host("silent") as dead:
        read_url = several_hosts(standby.url(database_url), dead.address)
        router = ReadRouter(primary, make_engine(read_url, read_only=True), max_lag_seconds=60)
        try:
            assert router.state().usable, router.state()

            def on_which(session: Session) -> tuple[bool, str | None]:
                found = comics.get_comic(session, comic.id)
                in_recovery = session.execute(text("SELECT pg_is_in_recovery()")).scalar_one()
                return bool(in_recovery), found.title if found else None

            assert router.run(on_which) == (True, "On the standby")
        finally:
            router.close()
            primary.dispose()


# --- migrations and the command -----------------------------------------------------------


def test_migrations_run_past_a_dead_first_host(empty_database_url: str, dead: DeadHost) -> None:
    url = several_hosts(empty_database_url, dead.address)
    assert schema.current_revision(empty_database_url) is None
    schema.upgrade(url)
    assert schema.current_revision(url) == schema.head_revision()


def test_the_command_migrates_past_a_dead_first_host(
    tmp_path: Path, empty_database_url: str, redis_url: str
) -> None:
    with dead_host("refused") as dead:
        env = command_env(tmp_path, several_hosts(empty_database_url, dead.address), redis_url)
        result = morpheus(["db", "upgrade"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("(head)"), result.stdout
    assert TEST_URL_PASSWORD not in result.stdout + result.stderr


# --- when no host answers -----------------------------------------------------------------


def test_when_no_host_answers_each_is_named_and_the_password_never(
    tmp_path: Path, database_url: str, redis_url: str, logs: io.StringIO
) -> None:
    with dead_host("refused") as first, dead_host("refused") as second:
        url = several_hosts(database_url, first.address, second.address)
        # ...the last host being the database's, under a name it does not have.
        url = make_url(url).set(database="no_such_database").render_as_string(hide_password=False)
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            with pytest.raises(OperationalError) as caught:
                timed_server_port(engine)
        finally:
            engine.dispose()
        result = morpheus(["db", "current"], command_env(tmp_path, url, redis_url))
    message = str(caught.value)
    assert "Multiple connection attempts failed" in message
    assert f"port: '{first.port}'" in message and f"port: '{second.port}'" in message
    # The command says it on one line, each host in the order tried.
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("morpheus: error: the database is not reachable: tried 3 hosts in turn")
    assert line.index(f"'{first.port}'") < line.index(f"'{second.port}'") < line.index("no_such")
    for text_shown in (message, logs.getvalue(), result.stdout, result.stderr):
        assert TEST_URL_PASSWORD not in text_shown
