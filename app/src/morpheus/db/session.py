"""Engines and sessions.

A database URL names one server or several PgBouncers (:mod:`morpheus.database_url`):
psycopg tries them in order, each attempt bounded by the URL's ``connect_timeout`` when it
gives one, else by the engine's.

The engine works through PgBouncer in transaction pooling mode: psycopg never prepares
statements on the server (``prepare_threshold=None``), nothing relies on session state
(the statement timeout is set per transaction with ``SET LOCAL`` semantics) and no
libpq ``options`` startup parameter is sent (PgBouncer refuses it). An engine made
``read_only`` (the hot standby's), and :func:`read_only` of any engine (the reads of
:mod:`morpheus.db.standby`), open every transaction with ``BEGIN READ ONLY``, per
transaction too: a write through them fails, whichever server it reaches.

A restarted PostgreSQL (or a PgBouncer that lost its servers) leaves dead connections in
the pool: each is pinged when checked out (``pool_pre_ping``) and replaced when the ping
fails. A connection that dies between the ping and the query fails the transaction;
:func:`retry_on_disconnect` runs a read transaction once more on a fresh connection, and
:func:`database_unavailable` tells the web layer which errors mean "the database cannot
answer now" (503), not "the program is wrong" (500), and :func:`on_unavailable` tells
whoever asks (the readiness checks) each time the engine meets such an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import structlog
from sqlalchemy import Connection, Engine, ExceptionContext, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from morpheus.settings import Settings

T = TypeVar("T")

log = structlog.stdlib.get_logger("morpheus.db")

APPLICATION_NAME = "morpheus"

# psycopg's read_only: every transaction begins with BEGIN READ ONLY. SQLAlchemy sets it
# on a pooled connection while an engine with this option holds it, and resets it after.
READ_ONLY = {"postgresql_readonly": True}

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
    read_only: bool = False,
) -> Engine:
    """A new engine with PgBouncer-safe settings; the caller owns (and disposes) it.
    ``read_only``: every transaction is read-only (psycopg sends ``BEGIN READ ONLY``)."""
    engine = create_engine(
        database_url,
        connect_args=connect_args(database_url, connect_timeout, application_name),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Errors and logs name the statement, never its parameters: those hold novels'
        # text, titles and client addresses.
        hide_parameters=True,
        execution_options=READ_ONLY if read_only else {},
    )
    if statement_timeout_ms > 0:
        _install_statement_timeout(engine, statement_timeout_ms)
    return engine


def connect_args(
    database_url: str, connect_timeout: int, application_name: str = APPLICATION_NAME
) -> dict[str, Any]:
    """psycopg's arguments for every connection to ``database_url``. ``connect_timeout``
    bounds each attempt (each host's) unless the URL gives its own: SQLAlchemy lets these
    arguments win over the URL's, and the URL's is the one its hosts were given with."""
    arguments: dict[str, Any] = {
        # No server-side prepared statements: PgBouncer 1.18 in transaction pooling
        # hands each transaction to any server connection, where they do not exist.
        "prepare_threshold": None,
        "application_name": application_name,
    }
    if "connect_timeout" not in make_url(database_url).query:
        arguments["connect_timeout"] = connect_timeout
    return arguments


def read_only(engine: Engine) -> Engine:
    """``engine`` (its pool, its events) with every transaction read-only."""
    return engine.execution_options(**READ_ONLY)


def _install_statement_timeout(engine: Engine, timeout_ms: int) -> None:
    value = str(int(timeout_ms))
    statement = "SELECT set_config('statement_timeout', %s, true)"

    @event.listens_for(engine, "begin")
    def _set_local_timeout(conn: Connection) -> None:
        # set_config(..., is_local => true) lasts until the end of this transaction only,
        # so nothing leaks to other clients sharing the server connection via PgBouncer.
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        with dbapi_connection.cursor() as cursor:
            try:
                cursor.execute(statement, (value,))
            except psycopg.Error as error:
                # The transaction's first statement: the one that meets a database that
                # cannot answer (PgBouncer's "server login has been failing" while
                # PostgreSQL restarts). Raised from an event, the driver's error would
                # escape SQLAlchemy's wrapping: wrap it as a statement's error is, so that
                # callers see an OperationalError (a 503), not an unknown error (a 500).
                raise DBAPIError.instance(
                    statement, (value,), error, psycopg.Error, dialect=conn.dialect
                ) from error


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


def is_disconnect(exc: BaseException) -> bool:
    """True when ``exc`` came from a connection that died (SQLAlchemy invalidated it)."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def database_unavailable(exc: BaseException) -> bool:
    """True for errors that mean the database cannot answer now, so a later try may work.

    A refused or dropped connection, a server starting up or shutting down, a statement
    timeout (all ``OperationalError``), a connection that died under a query, and a pool
    with no connection to give within ``db_pool_timeout_seconds``.
    """
    return isinstance(exc, OperationalError | PoolTimeoutError) or is_disconnect(exc)


def on_unavailable(engine: Engine, callback: Callable[[], None]) -> None:
    """Call ``callback`` each time ``engine`` meets an error that means the database
    cannot answer now: a connection refused or dropped, a server shutting down, a
    statement timeout. It runs in the thread that met the error, so it must be quick and
    thread-safe. A pooled connection found dead by its ping before use is not such an
    error: the pool replaces it, and only a failure to do so counts.
    """

    @event.listens_for(engine, "handle_error")
    def _met_unavailable(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return
        if context.is_disconnect or isinstance(
            context.original_exception, psycopg.OperationalError
        ):
            callback()


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("database connection lost, retrying the read once", error=repr(error))


# One for every read: its state lives per thread, so threads may share it.
_RETRY_ONCE_ON_DISCONNECT = Retrying(
    retry=retry_if_exception(is_disconnect),
    stop=stop_after_attempt(2),
    before_sleep=_log_retry,
    reraise=True,
)


def retry_on_disconnect(function: Callable[[], T]) -> Callable[[], T]:
    """``function`` (one read transaction) run once more if its connection died under it.

    Only for work that is safe to repeat: a write whose connection died may or may not
    have committed. The pool replaces the dead connection before the second run.
    """

    def run() -> T:
        return _RETRY_ONCE_ON_DISCONNECT(function)

    return run


def dispose_engines() -> None:
    """Close every pooled connection (at shutdown, or in a child after fork)."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
        _sessionmakers.clear()
    for engine in engines:
        engine.dispose()
