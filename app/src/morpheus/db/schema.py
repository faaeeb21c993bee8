"""Schema migrations (Alembic, shipped inside the package) as functions.

Every revision says, at module level, what it does to the schema the release still running
uses (migrations/README): ``phase = "expand"`` (it only adds: that release keeps working, and
again after a rollback) or ``phase = "contract"`` (it removes or changes what an older release
may use: it runs only once no older release runs). :func:`pending_migrations` reports each
pending revision's phase; ``scripts/lint-migrations`` checks the markers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from morpheus.db.session import connect_args

# The module-level attribute of a revision that names its phase, and the phases.
PHASE_ATTRIBUTE = "phase"
EXPAND = "expand"
CONTRACT = "contract"
PHASES = (EXPAND, CONTRACT)


@dataclass(frozen=True)
class Migration:
    """One revision: its id, its phase (None when its file has no valid marker), the first
    paragraph of its docstring (on one line) and its file."""

    revision: str
    phase: str | None
    description: str
    path: str

    def as_dict(self) -> dict[str, str | None]:
        return {"revision": self.revision, "phase": self.phase, "description": self.description}


def revision_phase(script: Script) -> str | None:
    """The phase a revision's file declares, or None when it declares none (or no known one)."""
    value = getattr(script.module, PHASE_ATTRIBUTE, None)
    return value if isinstance(value, str) and value in PHASES else None


def describe(script: Script) -> Migration:
    return Migration(
        revision=script.revision,
        phase=revision_phase(script),
        description=" ".join((script.doc or "").split()),
        path=script.path,
    )


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
        connect_args=connect_args(database_url, 10, "morpheus-migrate"),
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


def _pending_scripts(database_url: str, revision: str, config: Config | None) -> list[Script]:
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
    return list(reversed(steps))


def pending_revisions(
    database_url: str, revision: str = "head", *, config: Config | None = None
) -> list[str]:
    """The revisions ``upgrade(database_url, revision)`` would apply, oldest first.

    Empty when the database is already there; every revision for an empty database.
    ``config`` replaces the packaged migrations (another script directory).
    """
    return [step.revision for step in _pending_scripts(database_url, revision, config)]


def pending_migrations(
    database_url: str, revision: str = "head", *, config: Config | None = None
) -> list[Migration]:
    """:func:`pending_revisions` with each revision's phase and description."""
    return [describe(step) for step in _pending_scripts(database_url, revision, config)]
