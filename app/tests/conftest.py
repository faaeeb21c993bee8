"""Shared fixtures: a private PostgreSQL database per test session, settings, sessions.

Each test session creates its own database (``morpheus_test_<hex>``) on the machine's
PostgreSQL, migrates it with the packaged Alembic migrations and drops it at the end, so
several test runs can go on at once. Redis users get a random queue name per test.

``MORPHEUS_TEST_PG_ADMIN_URL`` (a libpq URL of a role that may create databases) and
``MORPHEUS_TEST_REDIS_URL`` override the defaults below.

The tests of reads on a hot standby get one, made of the machine's PostgreSQL once per
test session (:mod:`hot_standby`); they are skipped, saying why, where none can be made.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from hot_standby import HotStandby, StandbyUnavailable
from morpheus.db import schema
from morpheus.db.session import dispose_engines, make_engine, make_sessionmaker
from morpheus.logging import configure_logging
from morpheus.settings import Settings
from psycopg import sql
from several_hosts import DEAD_KINDS, DeadHost, dead_host
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Test-only values: never used outside the test suite.
TEST_SECRET_KEY = "test-only-secret-key-not-for-production-0123456789"


def pg_admin_url() -> str:
    return os.environ.get("MORPHEUS_TEST_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL)


def sqlalchemy_url(libpq_url: str, database: str) -> str:
    """The SQLAlchemy (psycopg 3) URL of ``database`` on the admin URL's server."""
    url = make_url(libpq_url).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


def create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh, migrated database private to this test session."""
    admin_url = pg_admin_url()
    name = f"morpheus_test_{uuid.uuid4().hex[:12]}"
    try:
        create_database(admin_url, name)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    url = sqlalchemy_url(admin_url, name)
    try:
        schema.upgrade(url, "head")
        yield url
    finally:
        dispose_engines()
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def hot_standby(database_url: str) -> Iterator[HotStandby]:
    """A streaming hot standby of the machine's PostgreSQL, the session's database on it."""
    try:
        server = HotStandby.create(pg_admin_url())
    except StandbyUnavailable as exc:
        pytest.skip(f"no hot standby can be made here: {exc}")
    try:
        server.catch_up()
        yield server
    finally:
        server.remove()


@pytest.fixture
def standby(hot_standby: HotStandby) -> HotStandby:
    """The session's hot standby running, replaying and caught up with the primary,
    whatever a test before left it."""
    if not hot_standby.running:
        hot_standby.start()
    hot_standby.resume_replay()
    hot_standby.catch_up()
    return hot_standby


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """SQLAlchemy URL of a new database with no tables, dropped after the test."""
    admin_url = pg_admin_url()
    name = f"morpheus_test_{uuid.uuid4().hex[:12]}"
    try:
        create_database(admin_url, name)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    try:
        yield sqlalchemy_url(admin_url, name)
    finally:
        dispose_engines()
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the tests use; each test isolates itself with a random queue/key prefix."""
    url = os.environ.get("MORPHEUS_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {url}: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: the session database, a random queue, a private storage dir."""
    storage = tmp_path / "storage"
    storage.mkdir()
    secrets_dir = tmp_path / "secrets"  # empty: the machine's /run/secrets is not read
    secrets_dir.mkdir()
    return Settings(
        _secrets_dir=secrets_dir,
        environment="test",
        release_id="test",
        database_url=database_url,
        redis_url=redis_url,
        queue_name=f"test-comics-{uuid.uuid4().hex[:12]}",
        storage_backend="local",
        storage_path=storage,
        provider="local",
        secret_key=TEST_SECRET_KEY,
        log_level="DEBUG",
        job_timeout_seconds=60,
        job_attempts=3,
        job_backoff_seconds=0.1,
        shutdown_grace_seconds=5,
        # Every test's queue shares the one test database: a worker's reconciler would
        # queue other tests' comics into its own queue. The reconciler's tests turn it on.
        reconciler_interval_seconds=0,
    )


@pytest.fixture
def db_session(database_url: str) -> Iterator[Session]:
    """A session on the test database (repository functions commit their own work)."""
    engine = make_engine(database_url, pool_size=2, max_overflow=0)
    session = make_sessionmaker(engine)()
    try:
        yield session
    finally:
        session.close()
        engine.dispose()


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """Every log line the service writes from DEBUG on, as JSON, in a buffer."""
    buffer = io.StringIO()
    configure_logging("DEBUG", stream=buffer)
    yield buffer
    configure_logging("INFO")


@pytest.fixture(params=DEAD_KINDS)
def dead(request: pytest.FixtureRequest) -> Iterator[DeadHost]:
    """A dead first host of a URL of several: refused at once, or silent until the timeout."""
    with dead_host(request.param) as host:
        yield host
