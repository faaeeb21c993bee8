"""Schema migrations (Alembic, shipped inside the package) as functions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool


def _package_dir() -> Path:
    return Path(str(resources.files("morpheus")))


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the packaged migrations, migrating ``database_url``."""
    package = _package_dir()
    config = Config(str(package / "alembic.ini"))
    config.set_main_option("script_location", str(package / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


@contextmanager
def _migration_context(database_url: str) -> Iterator[MigrationContext]:
    """Alembic's view of the database (its ``alembic_version`` table), read only."""
    engine = create_engine(
        database_url,
        poolclass=NullPool,
        connect_args={"prepare_threshold": None, "connect_timeout": 10},
        hide_parameters=True,
    )
    try:
        with engine.connect() as connection:
            yield MigrationContext.configure(connection)
    finally:
        engine.dispose()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with _migration_context(database_url) as context:
        return context.get_current_revision()


def pending_revisions(
    database_url: str, revision: str = "head", *, config: Config | None = None
) -> list[str]:
    """The revisions ``upgrade(database_url, revision)`` would apply, oldest first.

    Empty when the database is already there; every revision for an empty database.
    ``config`` replaces the packaged migrations (another script directory).
    """
    script = ScriptDirectory.from_config(config or alembic_config(database_url))
    with _migration_context(database_url) as context:
        current = context.get_current_heads()
    known = {item.revision for item in script.walk_revisions()}
    unknown = [head for head in current if head not in known]
    if unknown:
        raise CommandError(
            f"the database is at revision {', '.join(unknown)}, which these migrations do "
            "not know (did a newer release migrate it?)"
        )
    try:
        # The walk Alembic's own upgrade takes: from the target down to the current heads.
        steps = list(script.iterate_revisions(revision, current, implicit_base=True))
    except RevisionError as exc:
        raise CommandError(str(exc)) from exc
    return [step.revision for step in reversed(steps)]
