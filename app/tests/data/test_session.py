"""Engines: per-transaction statement timeout, no prepared statements, shared per settings."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from morpheus.db.models import Comic
from morpheus.db.session import (
    database_unavailable,
    dispose_engines,
    get_engine,
    get_sessionmaker,
    make_engine,
    make_sessionmaker,
    on_unavailable,
    read_only,
    retry_on_disconnect,
    session_scope,
)
from morpheus.settings import Settings
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError


def test_statement_timeout_cancels_a_slow_query(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0, statement_timeout_ms=200)
    try:
        with engine.connect() as conn, pytest.raises(OperationalError) as caught:
            conn.execute(text("SELECT pg_sleep(3)"))
        assert isinstance(caught.value.orig, psycopg.errors.QueryCanceled)
        # The connection is fine afterwards, and the timeout holds in every transaction.
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "200ms"
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_statement_timeout_zero_sets_nothing(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0, statement_timeout_ms=0)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar_one() == "0"
    finally:
        engine.dispose()


def test_engine_never_prepares_statements(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            for _ in range(20):
                conn.execute(text("SELECT CAST(:n AS int)"), {"n": 1})
                conn.commit()
            prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements"))
            assert prepared.scalar_one() == 0
    finally:
        engine.dispose()


def test_engines_are_shared_per_settings_and_disposed(settings: Settings) -> None:
    assert get_engine(settings) is get_engine(settings)
    assert get_sessionmaker(settings) is get_sessionmaker(settings)
    other = settings.model_copy(update={"db_statement_timeout_ms": 1234})
    assert get_engine(other) is not get_engine(settings)
    with session_scope(other) as session:
        assert session.execute(text("SHOW statement_timeout")).scalar_one() == "1234ms"
    first = get_engine(settings)
    dispose_engines()
    assert get_engine(settings) is not first


def test_session_scope_commits_on_success_and_rolls_back_on_error(settings: Settings) -> None:
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    with session_scope(settings) as session:
        session.add(Comic(id=kept, title="Kept", source_text="a b", word_count=2))
    with pytest.raises(RuntimeError), session_scope(settings) as session:
        session.add(Comic(id=dropped, title="Dropped", source_text="a b", word_count=2))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(settings) as session:
        assert session.get(Comic, kept) is not None
        assert session.get(Comic, dropped) is None


def test_a_read_whose_connection_dies_under_it_runs_once_more(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    runs: list[int] = []

    def read() -> int:
        runs.append(1)
        with sessions() as session:
            if len(runs) == 1:  # the server ends this very connection, mid-transaction
                session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return int(session.execute(text("SELECT 42")).scalar_one())

    try:
        assert retry_on_disconnect(read)() == 42
        assert len(runs) == 2
    finally:
        engine.dispose()


def test_other_database_errors_are_not_retried(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    sessions = make_sessionmaker(engine)
    runs: list[int] = []

    def broken() -> None:
        runs.append(1)
        with sessions() as session:
            session.execute(text("SELECT * FROM no_such_table"))

    try:
        with pytest.raises(ProgrammingError) as caught:
            retry_on_disconnect(broken)()
        assert len(runs) == 1
        assert not database_unavailable(caught.value)
    finally:
        engine.dispose()


def test_an_unreachable_database_is_unavailable_not_broken(database_url: str) -> None:
    url = make_url(database_url).set(port=1).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=1, max_overflow=0, connect_timeout=1)
    try:
        with pytest.raises(OperationalError) as caught, engine.connect():
            pass
        assert database_unavailable(caught.value)
    finally:
        engine.dispose()


def test_the_engine_tells_of_each_error_that_means_the_database_cannot_answer(
    database_url: str,
) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0, statement_timeout_ms=100)
    met: list[int] = []
    on_unavailable(engine, lambda: met.append(1))
    try:
        with engine.connect() as conn, pytest.raises(ProgrammingError):
            conn.execute(text("SELECT * FROM no_such_table"))
        assert met == []  # a wrong statement says nothing of the database
        with engine.connect() as conn, pytest.raises(OperationalError):
            conn.execute(text("SELECT pg_sleep(3)"))
        assert met == [1]
        with engine.connect() as conn, pytest.raises(OperationalError):
            conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert met == [1, 1]
    finally:
        engine.dispose()


def test_a_pooled_connection_found_dead_and_replaced_is_not_told(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    met: list[int] = []
    on_unavailable(engine, lambda: met.append(1))
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        # The pooled connection dies while it waits in the pool (a server restart does
        # that to every one): its ping before use fails, and the pool opens another.
        with psycopg.connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert met == []
    finally:
        engine.dispose()


def test_an_unreachable_database_is_told(database_url: str) -> None:
    url = make_url(database_url).set(port=1).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=1, max_overflow=0, connect_timeout=1)
    met: list[int] = []
    on_unavailable(engine, lambda: met.append(1))
    try:
        with pytest.raises(OperationalError), engine.connect():
            pass
        assert met == [1]
    finally:
        engine.dispose()


def test_the_read_only_engine_of_an_engine_tells_as_the_engine(database_url: str) -> None:
    """The reads the primary answers in a hot standby's stead go through ``read_only`` of
    its engine: what they meet is told as the engine's own."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0, statement_timeout_ms=100)
    met: list[int] = []
    on_unavailable(engine, lambda: met.append(1))
    try:
        with read_only(engine).connect() as conn, pytest.raises(OperationalError):
            conn.execute(text("SELECT pg_sleep(3)"))
        assert met == [1]
    finally:
        engine.dispose()
