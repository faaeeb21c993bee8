"""scripts/lint-migrations: every revision carries a phase marker, an expand revision adds
only, and squawk reads every revision's SQL. Extra revisions are written to a copy of the
versions directory (--versions), never into the tree."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_harness import ROOT, load

lint = load("lint-migrations")

VERSIONS = ROOT / "app" / "src" / "morpheus" / "migrations" / "versions"
SCRIPT = ROOT / "scripts" / "lint-migrations"


def head() -> str:
    """The newest packaged revision (the highest number: they form one line)."""
    return max(p.name.split("_", 1)[0] for p in VERSIONS.glob("[0-9]*_*.py"))


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    """A copy of the packaged revisions, to add revisions to."""
    copy = tmp_path / "versions"
    shutil.copytree(VERSIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def add_revision(
    versions: Path, upgrade: str, phase: str | None, name: str = "9001", down: str = ""
) -> Path:
    marker = "" if phase is None else f"phase: str = {phase!r}\n"
    path = versions / f"{name}_extra.py"
    path.write_text(
        f'"""An extra revision written by a test."""\n\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "{name}"\ndown_revision = "{down or head()}"\n'
        f"branch_labels = None\ndepends_on = None\n{marker}\n\n"
        f"def upgrade() -> None:\n{textwrap.indent(textwrap.dedent(upgrade).strip(), '    ')}\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_packaged_revisions_pass():
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("lint-migrations: ok, ")
    assert "0001 expand" in result.stdout


def test_an_expand_revision_that_drops_a_column_is_refused(versions):
    path = add_revision(versions, 'op.drop_column("comics", "client_addr")', "expand")
    result = run("--versions", str(versions))
    assert result.returncode == 1, result.stdout + result.stderr
    problems = result.stdout.splitlines()[:-1]
    assert problems == [
        f'{path}: revision 9001 is marked phase = "expand" but drops a column: '
        "`ALTER TABLE comics DROP COLUMN client_addr`; the release still running, or the "
        "one rolled back to, may break. Split it: stop using it in this release; drop it in "
        'a later release, in a revision marked phase = "contract"'
    ]
    assert result.stdout.splitlines()[-1].startswith("lint-migrations: 1 problem(s) in ")
    # Nothing was left in the tree.
    assert not list(VERSIONS.glob("9001_*"))


def test_a_contract_revision_that_drops_a_column_is_accepted(versions):
    add_revision(versions, 'op.drop_column("comics", "client_addr")', "contract")
    result = run("--versions", str(versions))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("9001 contract")


def test_a_revision_without_a_marker_is_refused(versions):
    path = add_revision(versions, 'op.add_column("comics", sa.Column("note", sa.Text()))', None)
    result = run("--versions", str(versions))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        f'{path}: revision 9001 has no phase marker: add `phase: str = "expand"`'
    )


def test_an_unknown_phase_is_refused(versions):
    add_revision(versions, "pass", "Expand")
    result = run("--versions", str(versions))
    assert result.returncode == 1
    assert 'revision 9001: phase is \'Expand\'; it must be "expand" or "contract"' in (
        result.stdout
    )


def test_squawk_reads_contract_revisions_too(versions):
    """A contract step may drop, but not stall the running release: an index dropped
    without CONCURRENTLY locks the table."""
    add_revision(versions, 'op.drop_index("ix_comics_created_at", table_name="comics")', "contract")
    result = run("--versions", str(versions))
    assert result.returncode == 1
    (problem,) = result.stdout.splitlines()[:-1]
    assert "revision 9001: squawk require-concurrent-index-deletion: " in problem
    assert problem.endswith("of its SQL: `DROP INDEX ix_comics_created_at;`")


def test_expand_revisions_that_only_add_pass(versions):
    add_revision(
        versions,
        """
        op.add_column("comics", sa.Column("note", sa.Text(), nullable=True))
        tries = sa.Column("tries", sa.Integer(), server_default="0", nullable=False)
        op.add_column("comics", tries)
        op.alter_column("comics", "error", nullable=True)
        """,
        "expand",
    )
    # An index on an existing table: CONCURRENTLY, so outside the transaction, in a revision
    # of its own that can run again (squawk's prefer-robust-stmts).
    add_revision(
        versions,
        """
        with op.get_context().autocommit_block():
            op.create_index(
                "ix_comics_note",
                "comics",
                ["note"],
                postgresql_concurrently=True,
                if_not_exists=True,
            )
        """,
        "expand",
        name="9002",
        down="9001",
    )
    result = run("--versions", str(versions))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("9001 expand, 9002 expand")


def test_a_statement_can_silence_squawk_but_not_the_phase_rule(versions):
    upgrade = (
        'op.execute("-- a validated CHECK constraint makes the scan quick\\n'
        "-- squawk-ignore adding-not-nullable-field\\n"
        'ALTER TABLE comics ALTER COLUMN word_count SET NOT NULL")'
    )
    add_revision(versions, upgrade, "contract")
    assert run("--versions", str(versions)).returncode == 0
    add_revision(versions, upgrade, "expand")
    result = run("--versions", str(versions))
    assert result.returncode == 1
    assert "but makes an existing column NOT NULL: `" in result.stdout


def test_a_revision_that_cannot_render_offline_is_refused(versions):
    upgrade = 'rows = op.get_bind().execute(sa.text("SELECT id FROM comics")).fetchall()'
    add_revision(versions, upgrade, "expand")
    result = run("--versions", str(versions))
    assert result.returncode == 1
    assert "revision 9001: its upgrade cannot be rendered as SQL offline" in result.stdout


def test_two_heads_are_refused(versions):
    add_revision(versions, "pass", "expand", name="9001")
    add_revision(versions, "pass", "expand", name="9002")
    result = run("--versions", str(versions))
    assert result.returncode == 1
    assert result.stdout.startswith("migrations: 2 heads (9001, 9002)")


# --- the phase rule's reading of SQL ------------------------------------------------------


def finding(sql: str) -> str | None:
    found = [lint.destructive(s) for s in lint.split_statements(sql)]
    found = [f.what for f in found if f]
    assert len(found) <= 1, found
    return found[0] if found else None


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP TABLE comics;", "drops a table"),
        ("drop table if exists comics cascade;", "drops a table"),
        ("DROP INDEX CONCURRENTLY ix_comics_created_at;", "drops an index"),
        ("DROP MATERIALIZED VIEW totals;", "drops a materialized view"),
        ("DROP TYPE mood;", "drops a type"),
        ("TRUNCATE comics;", "empties a table"),
        ("ALTER TABLE comics DROP COLUMN title;", "drops a column"),
        ("ALTER TABLE ONLY comics DROP title;", "drops a column"),
        ("ALTER TABLE comics DROP CONSTRAINT ck_comics_stage;", "drops a constraint"),
        ("ALTER TABLE comics RENAME COLUMN title TO name;", "renames a column"),
        ("ALTER TABLE comics RENAME TO books;", "renames the table"),
        ("ALTER TABLE comics RENAME CONSTRAINT a TO b;", "renames a constraint"),
        ("ALTER INDEX ix_a RENAME TO ix_b;", "renames something"),
        ("ALTER TYPE mood RENAME VALUE 'sad' TO 'blue';", "renames something"),
        ("ALTER TABLE comics ALTER COLUMN attempts TYPE BIGINT;", "changes a column's type"),
        ("ALTER TABLE comics ALTER attempts SET DATA TYPE BIGINT;", "changes a column's type"),
        (
            "ALTER TABLE comics ADD COLUMN n TEXT, ALTER COLUMN error SET NOT NULL;",
            "makes an existing column NOT NULL",
        ),
        ("ALTER TABLE comics ALTER COLUMN status DROP DEFAULT;", "drops a column's default"),
        ("ALTER TABLE comics SET SCHEMA archive;", "moves the table to another schema"),
        (
            "ALTER TABLE comics ADD COLUMN n INTEGER NOT NULL;",
            "adds a NOT NULL column without a default",
        ),
        ('ALTER TABLE "my comics" DROP COLUMN "the title";', "drops a column"),
        # Only adds, or relaxes:
        ("CREATE TABLE t (id INTEGER NOT NULL, CONSTRAINT pk PRIMARY KEY (id));", None),
        ("CREATE INDEX CONCURRENTLY ix ON comics (title);", None),
        ("ALTER TABLE comics ADD COLUMN n INTEGER;", None),
        ("ALTER TABLE comics ADD COLUMN n INTEGER DEFAULT 0 NOT NULL;", None),
        ("ALTER TABLE comics ADD COLUMN n INTEGER GENERATED ALWAYS AS (1) STORED NOT NULL;", None),
        ("ALTER TABLE comics ALTER COLUMN error DROP NOT NULL;", None),
        ("ALTER TABLE comics ALTER COLUMN status SET DEFAULT 'queued';", None),
        (
            "ALTER TABLE pages ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES comics (id) NOT VALID;",
            None,
        ),
        ("ALTER TABLE pages ADD CONSTRAINT ck CHECK (n IS NOT NULL) NOT VALID;", None),
        ("UPDATE alembic_version SET version_num='0003' WHERE version_num = '0002';", None),
        ("SET LOCAL lock_timeout = '5000ms';", None),
        # Words in comments, literals and bodies are no statements:
        ("-- DROP TABLE comics;\nCOMMENT ON TABLE comics IS 'we DROP TABLE nothing';", None),
        ("/* ALTER TABLE x DROP COLUMN y; */ SELECT 1;", None),
        (
            "CREATE FUNCTION f() RETURNS void AS $body$ DROP TABLE comics; $body$ LANGUAGE sql;",
            None,
        ),
        ("INSERT INTO notes (body) VALUES ('it''s; DROP TABLE comics');", None),
    ],
)
def test_the_phase_rule_reads_statements(sql, expected):
    assert finding(sql) == expected


def test_statements_keep_their_text_on_one_line():
    statements = lint.split_statements("BEGIN;\n\nALTER TABLE comics\n    DROP COLUMN a;\n")
    assert [s.text for s in statements] == ["BEGIN", "ALTER TABLE comics DROP COLUMN a"]
