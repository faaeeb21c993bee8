"""Engines and sessions.

The engine works through PgBouncer in transaction pooling mode: psycopg never prepares
statements on the server (``prepare_threshold=None``), nothing relies on session state
(the statement timeout is set per transaction with ``SET LOCAL`` semantics) and no
libpq ``options`` startup parameter is sent (PgBouncer refuses it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from morpheus.settings import Settings

APPLICATION_NAME = "morpheus"

_lock = threading.Lock()
_engines: dict[tuple[Any, ...], Engine] = {}
_sessionmakers: dict[tuple[Any, ...], sessionmaker[Session]] = {}


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_timeout: float = 10.0,
    connect_timeout: int = 5,
    statement_timeout_ms: int = 30_000,
    application_name: str = APPLICATION_NAME,
) -> Engine:
    """A new engine with PgBouncer-safe settings; the caller owns (and disposes) it."""
    engine = create_engine(
        database_url,
        connect_args={
            # No server-side prepared statements: PgBouncer 1.18 in transaction pooling
            # hands each transaction to any server connection, where they do not exist.
            "prepare_threshold": None,
            "connect_timeout": connect_timeout,
            "application_name": application_name,
        },
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
    if statement_timeout_ms > 0:
        _install_statement_timeout(engine, statement_timeout_ms)
    return engine


def _install_statement_timeout(engine: Engine, timeout_ms: int) -> None:
    value = str(int(timeout_ms))

    @event.listens_for(engine, "begin")
    def _set_local_timeout(conn: Connection) -> None:
        # set_config(..., is_local => true) lasts until the end of this transaction only,
        # so nothing leaks to other clients sharing the server connection via PgBouncer.
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", (value,))


def _key(settings: Settings) -> tuple[Any, ...]:
    return (
        settings.database_url,
        settings.db_pool_size,
        settings.db_max_overflow,
        settings.db_pool_timeout_seconds,
        settings.db_connect_timeout_seconds,
        settings.db_statement_timeout_ms,
    )


def get_engine(settings: Settings) -> Engine:
    """The shared engine for these settings (one per database URL and pool settings)."""
    key = _key(settings)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = make_engine(
                settings.database_url,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_timeout=settings.db_pool_timeout_seconds,
                connect_timeout=settings.db_connect_timeout_seconds,
                statement_timeout_ms=settings.db_statement_timeout_ms,
            )
            _engines[key] = engine
        return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (repository functions commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_sessionmaker(settings: Settings) -> sessionmaker[Session]:
    """The shared session factory for these settings."""
    engine = get_engine(settings)
    key = _key(settings)
    with _lock:
        factory = _sessionmakers.get(key)
        if factory is None:
            factory = make_sessionmaker(engine)
            _sessionmakers[key] = factory
        return factory


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits what is left pending on success and rolls back on error."""
    session = get_sessionmaker(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Close every pooled connection (at shutdown, or in a child after fork)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
        _sessionmakers.clear()
    for engine in engines:
        engine.dispose()
