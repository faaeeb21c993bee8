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


@pytest.fixture()
def broken_release(host):
    """A release whose image carries a migration that fails after changing data."""
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
    build = "/tmp/broken-release"
    host.run(f"rm -rf {build} && mkdir -p {build}")
    migration = BROKEN_MIGRATION.replace("{head}", head)
    host.run(f"cat > {build}/9999_broken.py <<'EOF'\n{migration}\nEOF")
    host.run(
        f"printf 'FROM morpheus/app:{release}\\nCOPY 9999_broken.py {site}/migrations/versions/\\n'"
        f" > {build}/Dockerfile"
    )
    built = host.run(f"docker build -q -t morpheus/app:broken-test {build}")
    assert built.rc == 0, built.stderr
    yield "broken-test"
    host.run("docker image rm -f morpheus/app:broken-test")


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
