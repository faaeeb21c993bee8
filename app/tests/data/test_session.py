"""Engines: per-transaction statement timeout, no prepared statements, shared per settings."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from morpheus.db.models import Comic
from morpheus.db.session import (
    dispose_engines,
    get_engine,
    get_sessionmaker,
    make_engine,
    session_scope,
)
from morpheus.settings import Settings
from sqlalchemy import text
from sqlalchemy.exc import OperationalError


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
