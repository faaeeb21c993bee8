"""Bad input and broken releases stop before they harm the running platform: a
backend bound to every address, a migration that fails half-way."""

import textwrap

import pytest
from site_checks import BACKEND, docker_inspect, playbook, release_id, sql


def test_bad_backend_input_stops_before_any_change(host):
    before = docker_inspect(host, BACKEND)["Id"]
    every_address = "0.0.0.0"  # noqa: S104 - the bad input under test
    code, output = playbook("site.yml", {"backend_bind_address": every_address}, tags="backend")
    assert code != 0
    assert (
        "backend_bind_address one IP address of the host, its private one, never 0.0.0.0" in output
    )
    assert docker_inspect(host, BACKEND)["Id"] == before


BROKEN_MIGRATION = textwrap.dedent(
    '''
    """A migration that fails half-way, after committing part of its work (as one that
    cannot run in a transaction does): only the restore of the dump undoes it."""
    import sqlalchemy as sa
    from alembic import op

    revision = "9999_broken"
    down_revision = "{head}"
    phase = "expand"

    def upgrade():
        op.create_table("broken_half_way", sa.Column("id", sa.Integer, primary_key=True))
        op.execute("DELETE FROM users")
        op.execute("COMMIT")
        raise RuntimeError("this migration is broken on purpose")

    def downgrade():
        pass
    '''
)


CONTRACT_MIGRATION = textwrap.dedent(
    '''
    """Drop a column an older release still reads: a contract step."""
    from alembic import op

    revision = "9999_contract"
    down_revision = "{head}"
    phase = "contract"

    def upgrade():
        op.drop_column("comics", "client_addr")

    def downgrade():
        pass
    '''
)


def release_with_migration(host, tag: str, name: str, migration: str) -> str:
    """A release built on the host from the running one, with one migration more."""
    release = release_id(host)
    head = host.run(
        f"docker run --rm --entrypoint python3 morpheus/app:{release} -c "
        "'from morpheus.db import schema; print(schema.head_revision())'"
    ).stdout.strip()
    assert head, "no head revision"
    site = host.run(
        f"docker run --rm --entrypoint python3 morpheus/app:{release} -c "
        "'import morpheus, os; print(os.path.dirname(morpheus.__file__))'"
    ).stdout.strip()
    build = f"/tmp/release-{tag}"
    host.run(f"rm -rf {build} && mkdir -p {build}")
    host.run(f"cat > {build}/{name} <<'EOF'\n{migration.replace('{head}', head)}\nEOF")
    host.run(
        f"printf 'FROM morpheus/app:{release}\\nCOPY {name} {site}/migrations/versions/\\n'"
        f" > {build}/Dockerfile"
    )
    built = host.run(f"docker build -q -t morpheus/app:{tag} {build}")
    assert built.rc == 0, built.stderr
    return tag


@pytest.fixture()
def broken_release(host):
    """A release whose image carries a migration that fails after changing data."""
    yield release_with_migration(host, "broken-test", "9999_broken.py", BROKEN_MIGRATION)
    host.run("docker image rm -f morpheus/app:broken-test")


@pytest.fixture()
def contract_release(host):
    """A release whose image carries a contract step: it drops a column."""
    yield release_with_migration(host, "contract-test", "9999_contract.py", CONTRACT_MIGRATION)
    host.run("docker image rm -f morpheus/app:contract-test")


def test_a_contract_migration_is_refused_while_an_older_release_may_need_it(host, contract_release):
    """Refused by default; allowed, still refused while containers of the running
    release are there; nothing migrated either way, no dump taken."""
    revision = host.run(f"docker exec {BACKEND} morpheus db current").stdout
    dumps = host.run("ls /var/backups/morpheus/migrations").stdout
    code, output = playbook("rolling_update.yml", {"release": contract_release})
    assert code != 0
    assert "holds contract step(s) 9999_contract" in output, output[-3000:]
    assert "Nothing was migrated and nothing changed" in output
    code, output = playbook(
        "rolling_update.yml", {"release": contract_release, "allow_contract_migration": True}
    )
    assert code != 0
    assert "allowed by migrations_allow_contract, but containers of another release" in output
    assert f"morpheus-backend-0 (backend, release '{release_id(host)}')" in output
    assert host.run(f"docker exec {BACKEND} morpheus db current").stdout == revision
    assert host.run("ls /var/backups/morpheus/migrations").stdout == dumps
    assert (
        sql(
            host,
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'comics' AND column_name = 'client_addr'",
        )
        == "1"
    )


def test_failed_migration_restores_the_database_and_stops(host, broken_release):
    users_before = sql(host, "SELECT count(*) FROM users")
    assert users_before == "1"
    code, output = playbook("migrate.yml", {"morpheus_release_id": broken_release})
    assert code != 0
    assert f"The migration to morpheus/app:{broken_release} failed" in output
    assert "this migration is broken on purpose" in output
    dump_dir = "/var/backups/morpheus/migrations"
    assert f"The database is restored from {dump_dir}/morpheus-broken-test-" in output
    # The data the migration deleted (and committed) is back, its table is not there, the
    # schema is at the running release's head, and that release still serves.
    assert sql(host, "SELECT count(*) FROM users") == users_before
    assert sql(host, "SELECT to_regclass('broken_half_way') IS NULL") == "t"
    assert "(head)" in host.run(f"docker exec {BACKEND} morpheus db current").stdout
    assert docker_inspect(host, BACKEND)["State"]["Health"]["Status"] == "healthy"
    dumps = host.run("ls /var/backups/morpheus/migrations").stdout.split()
    assert any(d.startswith("morpheus-broken-test-") and d.endswith(".dump") for d in dumps)
