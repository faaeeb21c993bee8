"""Alembic environment: migrates the database named by the settings (or by the caller).

Migrations run in one transaction that first takes a transaction-level advisory lock, so
several processes starting at once (and PgBouncer in transaction pooling mode) are safe;
the lock is the primary's, so it holds whichever of a URL's PgBouncers each one reached.

Then, for that transaction, ``SET LOCAL lock_timeout`` and ``SET LOCAL statement_timeout``
(MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS, default 5 s, and
MORPHEUS_DB_MIGRATION_STATEMENT_TIMEOUT_MS, default 5 min; 0 disables either): a migration
that cannot get a table's lock soon fails, instead of holding the running release's queries
queued behind it, and nothing runs unbounded. The waiting for another process's advisory
lock comes before, unbounded by them. A transaction Alembic begins after a revision's
``autocommit_block()`` gets the same limits; the statements inside such a block run outside
any transaction and so without them. Offline (``--sql``), the same SET LOCAL statements
follow BEGIN, so the script a reviewer or ``scripts/lint-migrations`` reads is what runs.

A caller may set both through ``config.attributes`` ("lock_timeout_ms",
"statement_timeout_ms"), as the lint does.
"""

from __future__ import annotations

import os

from alembic import context
from morpheus.db.models import Base
from morpheus.db.session import make_engine
from sqlalchemy import Connection, event, text

# Any constant shared by every process that migrates this schema.
MIGRATION_LOCK_KEY = 7_270_211_001

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("MORPHEUS_DATABASE_URL")
    if url:
        return str(url)
    from morpheus.settings import get_settings

    return get_settings().database_url


def _limits() -> list[str]:
    """The SET LOCAL statements of the migration's timeouts (none for a disabled one)."""
    from morpheus.settings import migration_timeouts

    lock_ms, statement_ms = migration_timeouts()
    lock_ms = int(config.attributes.get("lock_timeout_ms", lock_ms))
    statement_ms = int(config.attributes.get("statement_timeout_ms", statement_ms))
    return [
        f"SET LOCAL {name} = '{value}ms'"
        for name, value in (("lock_timeout", lock_ms), ("statement_timeout", statement_ms))
        if value > 0
    ]


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    limits = _limits()
    with context.begin_transaction():
        for statement in limits:
            context.execute(statement)
        context.run_migrations()


def run_migrations_online() -> None:
    limits = _limits()
    engine = make_engine(
        _database_url(),
        pool_size=1,
        max_overflow=0,
        statement_timeout_ms=0,  # the migration's own limits instead, below
        application_name="morpheus-migrate",
    )

    def limit_transaction(conn: Connection) -> None:
        # A transaction begun after a revision's autocommit_block(); none inside it.
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        with dbapi_connection.cursor() as cursor:
            for statement in limits:
                cursor.execute(statement)

    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection, target_metadata=target_metadata, compare_type=True
            )
            with context.begin_transaction():
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                for statement in limits:
                    connection.execute(text(statement))
                event.listen(connection, "begin", limit_transaction)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
