"""The packaged Alembic migrations build, remove and rebuild the schema the models describe."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic import command
from morpheus.db import repository, schema
from morpheus.db.session import make_engine, make_sessionmaker
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

TABLES = {"api_keys", "comics", "pages", "users"}


def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip(empty_database_url: str) -> None:
    url = empty_database_url
    head = schema.head_revision()
    assert head == "0001"
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
            comic = repository.create_comic(session, title="Round trip", source_text="one two")
            repository.upsert_page(session, comic.id, 1, "k", 10, 10)
            assert [p.number for p in repository.list_pages(session, comic.id)] == [1]
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
