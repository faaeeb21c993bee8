"""Alembic environment: migrates the database named by the settings (or by the caller).

Migrations run in one transaction that first takes a transaction-level advisory lock, so
several processes starting at once (and PgBouncer in transaction pooling mode) are safe.
"""

from __future__ import annotations

import os

from alembic import context
from morpheus.db.models import Base
from morpheus.db.session import make_engine
from sqlalchemy import text

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


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(
        _database_url(),
        pool_size=1,
        max_overflow=0,
        statement_timeout_ms=0,
        application_name="morpheus-migrate",
    )
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection, target_metadata=target_metadata, compare_type=True
            )
            with context.begin_transaction():
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
