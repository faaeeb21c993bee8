"""Each revision's phase (expand or contract), as `morpheus db pending --json` reports it
for the migrations role, and the lock and statement timeouts migrations run with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from morpheus.db import schema
from morpheus.settings import Settings, SettingsError, migration_timeouts
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from test_cli import app_env, assert_clean_failure, morpheus


def later_migrations(tmp_path: Path, database_url: str, revisions: dict[str, str]) -> Config:
    """The packaged migrations plus ``revisions`` (id: the file's body after its header),
    each after the one before, in order."""
    location = tmp_path / "migrations"
    shutil.copytree(
        schema.alembic_config("").get_main_option("script_location"),
        location,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    down = schema.head_revision()
    for revision, body in revisions.items():
        (location / "versions" / f"{revision}_later.py").write_text(
            f'"""Later revision {revision}."""\n\n'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f'revision = "{revision}"\ndown_revision = "{down}"\n'
            "branch_labels = None\ndepends_on = None\n" + body
        )
        down = revision
    config = schema.alembic_config(database_url)
    config.set_main_option("script_location", str(location))
    return config


EMPTY = "\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"


def test_every_packaged_revision_declares_its_phase() -> None:
    script = ScriptDirectory.from_config(schema.alembic_config(""))
    phases = {rev.revision: schema.revision_phase(rev) for rev in script.walk_revisions()}
    assert phases["0001"] == phases["0002"] == "expand"
    assert all(phase in schema.PHASES for phase in phases.values()), phases


def test_pending_migrations_carry_phase_and_description(
    empty_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    config = later_migrations(
        tmp_path,
        url,
        {
            "9001": 'phase = "expand"\n' + EMPTY,
            "9002": 'phase = "contract"\n' + EMPTY,
            "9003": EMPTY,  # no marker
            "9004": 'phase = "shrink"\n' + EMPTY,  # no known one
        },
    )
    pending = schema.pending_migrations(url, config=config)
    assert [(m.revision, m.phase) for m in pending] == [
        ("0001", "expand"),
        ("0002", "expand"),
        ("9001", "expand"),
        ("9002", "contract"),
        ("9003", None),
        ("9004", None),
    ]
    assert pending[0].description == "Initial schema: comics, pages, users, api_keys."
    assert pending[3].as_dict() == {
        "revision": "9002",
        "phase": "contract",
        "description": "Later revision 9002.",
    }
    assert pending[3].path.endswith("9002_later.py")
    command.upgrade(config, "9002")
    assert [m.revision for m in schema.pending_migrations(url, config=config)] == ["9003", "9004"]


def test_db_pending_json_lists_each_revision_with_its_phase(
    tmp_path: Path, empty_database_url: str, redis_url: str
) -> None:
    env = app_env(tmp_path, empty_database_url, redis_url)
    result = morpheus(["db", "pending", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert [(p["revision"], p["phase"]) for p in document["pending"]][:2] == [
        ("0001", "expand"),
        ("0002", "expand"),
    ]
    assert document["pending"][-1]["revision"] == schema.head_revision()
    assert all(set(p) == {"revision", "phase", "description"} for p in document["pending"])
    # The plain listing is unchanged: one revision a line.
    plain = morpheus(["db", "pending"], env).stdout.splitlines()
    assert plain == [p["revision"] for p in document["pending"]]

    result = morpheus(["db", "pending", "--json", "0001"], env)
    assert [p["revision"] for p in json.loads(result.stdout)["pending"]] == ["0001"]

    assert morpheus(["db", "upgrade"], env).returncode == 0
    result = morpheus(["db", "pending", "--json"], env)
    assert (result.returncode, result.stdout, result.stderr) == (0, '{"pending": []}\n', "")

    result = morpheus(["db", "pending", "--json", "nonexistent"], env)
    assert_clean_failure(result, 1)
    assert result.stdout == ""
    assert result.stderr == "morpheus: error: No such revision or branch 'nonexistent'\n"


# --- timeouts ---------------------------------------------------------------------------

# Records the limits each of its transactions ran with: the first, and the one Alembic
# begins after an autocommit_block().
RECORD_LIMITS = """phase = "expand"


def upgrade() -> None:
    op.execute(
        "CREATE TABLE seen_limits AS SELECT 1 AS step, current_setting('lock_timeout') AS lock,"
        " current_setting('statement_timeout') AS statement"
    )
    with op.get_context().autocommit_block():
        op.execute("SELECT 1")
    op.execute(
        "INSERT INTO seen_limits SELECT 2, current_setting('lock_timeout'),"
        " current_setting('statement_timeout')"
    )


def downgrade() -> None:
    op.execute("DROP TABLE seen_limits")
"""


def seen_limits(url: str) -> list[tuple[int, str, str]]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT step, lock, statement FROM seen_limits"))
            return sorted(tuple(row) for row in rows)
    finally:
        engine.dispose()


def test_migrations_run_with_the_default_timeouts(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS", raising=False)
    monkeypatch.delenv("MORPHEUS_DB_MIGRATION_STATEMENT_TIMEOUT_MS", raising=False)
    command.upgrade(later_migrations(tmp_path, empty_database_url, {"9001": RECORD_LIMITS}), "head")
    assert seen_limits(empty_database_url) == [(1, "5s", "5min"), (2, "5s", "5min")]


def test_the_timeouts_come_from_the_settings(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS", "1234")
    monkeypatch.setenv("MORPHEUS_DB_MIGRATION_STATEMENT_TIMEOUT_MS", "0")  # no limit
    command.upgrade(later_migrations(tmp_path, empty_database_url, {"9001": RECORD_LIMITS}), "head")
    assert seen_limits(empty_database_url) == [(1, "1234ms", "0"), (2, "1234ms", "0")]


def test_a_migration_that_waits_too_long_for_a_lock_fails_and_changes_nothing(
    empty_database_url: str, tmp_path: Path
) -> None:
    """A query of the running release holds a lock on comics: the migration's ALTER TABLE
    gives up after lock_timeout instead of queueing every later query behind it."""
    url = empty_database_url
    schema.upgrade(url)
    config = later_migrations(
        tmp_path,
        url,
        {
            "9001": 'phase = "expand"\n\n\ndef upgrade() -> None:\n'
            '    op.add_column("comics", sa.Column("note", sa.Text()))\n\n\n'
            "def downgrade() -> None:\n    pass\n"
        },
    )
    config.attributes["lock_timeout_ms"] = 300
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as reader:
        reader.execute("SELECT count(*) FROM comics")  # its transaction stays open
        with pytest.raises(Exception, match="lock timeout"):
            command.upgrade(config, "head")
    assert schema.current_revision(url) == schema.head_revision()
    assert schema.pending_revisions(url, config=config) == ["9001"]


def test_the_offline_sql_starts_with_the_limits(tmp_path: Path) -> None:
    config = schema.alembic_config("postgresql+psycopg://offline@localhost/offline")
    config.print_stdout = lambda *args: None  # type: ignore[method-assign]
    output = tmp_path / "upgrade.sql"
    with output.open("w") as buffer:
        config.output_buffer = buffer
        command.upgrade(config, "0001:0002", sql=True)
    statements = [s.strip() for s in output.read_text().split(";") if s.strip()]
    assert statements[:3] == [
        "BEGIN",
        "SET LOCAL lock_timeout = '5000ms'",
        "SET LOCAL statement_timeout = '300000ms'",
    ]


def test_migration_timeouts_settings() -> None:
    assert migration_timeouts({}) == (5_000, 300_000)
    defaults = Settings.model_fields
    assert defaults["db_migration_lock_timeout_ms"].default == 5_000
    assert defaults["db_migration_statement_timeout_ms"].default == 300_000
    assert migration_timeouts({"MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS": " 250 "}) == (250, 300_000)
    with pytest.raises(SettingsError) as raised:
        migration_timeouts(
            {
                "MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS": "-1",
                "MORPHEUS_DB_MIGRATION_STATEMENT_TIMEOUT_MS": "soon",
            }
        )
    assert [line.split(":")[0] for line in raised.value.lines] == [
        "MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS",
        "MORPHEUS_DB_MIGRATION_STATEMENT_TIMEOUT_MS",
    ]


def test_an_invalid_timeout_stops_the_command_naming_it(
    tmp_path: Path, empty_database_url: str, redis_url: str
) -> None:
    env = app_env(
        tmp_path, empty_database_url, redis_url, MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS="-5"
    )
    result = morpheus(["db", "upgrade"], env)
    assert_clean_failure(result, 2)
    assert result.stderr.startswith(
        "morpheus: invalid setting: MORPHEUS_DB_MIGRATION_LOCK_TIMEOUT_MS: "
    )
    assert schema.current_revision(empty_database_url) is None
