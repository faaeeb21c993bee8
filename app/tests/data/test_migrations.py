"""The packaged Alembic migrations build, remove and rebuild the schema the models describe."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from morpheus.db import comics, schema
from morpheus.db.session import make_engine, make_sessionmaker
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

TABLES = {"api_keys", "comics", "idempotency_keys", "pages", "users"}


def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    url = empty_database_url
    head = schema.head_revision()
    assert head == "0002"
    assert schema.current_revision(url) is None
    assert table_names(url) == set()

    schema.upgrade(url)
    assert schema.current_revision(url) == head
    assert table_names(url) == TABLES

    schema.downgrade(url, "base")
    assert schema.current_revision(url) is None
    assert table_names(url) == set()

    schema.upgrade(url, "head")
    assert schema.current_revision(url) == head
    assert table_names(url) == TABLES
    # The rebuilt schema is usable.
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        with make_sessionmaker(engine)() as session:
            comic = comics.create_comic(session, title="Round trip", source_text="one two")
            comics.upsert_page(session, comic.id, 1, "k", 10, 10)
            assert [p.number for p in comics.list_pages(session, comic.id)] == [1]
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    schema.upgrade(empty_database_url)
    schema.upgrade(empty_database_url)
    assert schema.current_revision(empty_database_url) == schema.head_revision()


def test_models_match_the_migrations(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: no model change lacks a migration."""
    command.check(schema.alembic_config(database_url))


def test_processes_migrating_at_once_do_not_collide(empty_database_url: str) -> None:
    """An advisory lock serialises concurrent upgrades (several containers starting)."""
    code = "import sys; from morpheus.db import schema; schema.upgrade(sys.argv[1])"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    assert schema.current_revision(empty_database_url) == schema.head_revision()
    assert table_names(empty_database_url) == TABLES


def test_unknown_revision_is_refused(empty_database_url: str) -> None:
    from alembic.util import CommandError

    with pytest.raises(CommandError, match="Can't locate revision"):
        schema.upgrade(empty_database_url, "9999")
    assert table_names(empty_database_url) == set()


def later_migrations(tmp_path: Path, database_url: str) -> Config:
    """The packaged migrations plus two empty later revisions, 9001 and 9002."""
    location = tmp_path / "migrations"
    shutil.copytree(schema.alembic_config("").get_main_option("script_location"), location)
    for revision, down in (("9002", "9001"), ("9001", schema.head_revision())):
        (location / "versions" / f"{revision}_later.py").write_text(
            f'revision = "{revision}"\ndown_revision = "{down}"\n'
            "branch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade() -> None:\n    pass\n\n\n"
            "def downgrade() -> None:\n    pass\n"
        )
    config = schema.alembic_config(database_url)
    config.set_main_option("script_location", str(location))
    return config


def test_pending_revisions_are_what_upgrade_applies_oldest_first(
    empty_database_url: str, tmp_path: Path
) -> None:
    from alembic.util import CommandError

    url = empty_database_url
    config = later_migrations(tmp_path, url)
    assert schema.pending_revisions(url) == ["0001", "0002"]
    assert schema.pending_revisions(url, config=config) == ["0001", "0002", "9001", "9002"]
    assert schema.pending_revisions(url, "9001", config=config) == ["0001", "0002", "9001"]
    assert schema.pending_revisions(url, "0001", config=config) == ["0001"]

    command.upgrade(config, "9001")
    assert schema.pending_revisions(url, config=config) == ["9002"]
    assert schema.pending_revisions(url, "9001", config=config) == []
    command.upgrade(config, "head")
    assert schema.pending_revisions(url, config=config) == []

    command.downgrade(config, "0002")
    assert schema.pending_revisions(url, config=config) == ["9001", "9002"]
    assert schema.pending_revisions(url) == []
    with pytest.raises(CommandError, match="No such revision or branch 'nope'"):
        schema.pending_revisions(url, "nope")


def test_pending_revisions_refuse_a_database_newer_than_the_migrations(
    empty_database_url: str, tmp_path: Path
) -> None:
    from alembic.util import CommandError

    command.upgrade(later_migrations(tmp_path, empty_database_url), "9002")
    with pytest.raises(CommandError) as raised:
        schema.pending_revisions(empty_database_url)
    assert str(raised.value) == (
        "the database is at revision 9002, which these migrations do not know "
        "(did a newer release migrate it?)"
    )
    # Nothing was changed by asking.
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "9002"
    finally:
        engine.dispose()


def test_the_idempotency_keys_revision_only_adds(empty_database_url: str) -> None:
    """0002 is expand-only: the previous release's schema (0001) is left as it was, so
    both releases run side by side; going back to 0001 removes the table alone."""
    url = empty_database_url
    schema.upgrade(url, "0001")
    before = columns_by_table(url)
    schema.upgrade(url, "0002")
    after = columns_by_table(url)
    assert set(after) - set(before) == {"idempotency_keys"}
    assert {table: after[table] for table in before} == before
    schema.downgrade(url, "0001")
    assert columns_by_table(url) == before


def columns_by_table(url: str) -> dict[str, list[tuple[str, str, bool]]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        inspector = inspect(engine)
        return {
            table: [
                (column["name"], str(column["type"]), bool(column["nullable"]))
                for column in inspector.get_columns(table)
            ]
            for table in inspector.get_table_names()
            if table != "alembic_version"
        }
    finally:
        engine.dispose()
