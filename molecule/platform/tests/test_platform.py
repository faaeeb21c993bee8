"""The whole platform on one host, as site.yml leaves it: every service, the release's
containers, the front door, the smoke test, and a migration that fails safely."""

import json
import re
import textwrap

import pytest
from conftest import PROJECT, ansible_playbook, assert_service_up

ADDRESS = "172.30.20.10"
DOMAIN = "morpheus.localhost"
NAMES = [f"app.{DOMAIN}", f"dashboard.{DOMAIN}", f"api.{DOMAIN}"]
ROOT_CA = "/etc/pebble/issuing-root.pem"
APP_PASSWORD = "local-only-postgresql-app"  # test-only value (inventories/local)
BACKEND = "morpheus-backend-0"
WORKER = "morpheus-worker-0"


def _playbook(name, extra_vars=None, tags=None, options=None):
    return ansible_playbook(
        PROJECT / "playbooks" / name, extra_vars, tags, timeout=1200, options=options
    )


def _inspect(host, container):
    result = host.run(f"docker inspect {container}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def _sql(host, sql):
    """As the service: through PgBouncer on the private address."""
    result = host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -X -At -v ON_ERROR_STOP=1 -h {ADDRESS} -p 6432 "
        f"-U morpheus -d morpheus -c {json.dumps(sql)}"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def _release_id(host):
    return _inspect(host, BACKEND)["Config"]["Labels"]["org.morpheus.release"]


@pytest.mark.parametrize(
    "unit",
    ["docker", "nginx", "pebble", "postgresql@15-main", "pgbouncer", "redis-server", "nftables"],
)
def test_services_run(host, unit):
    assert_service_up(host, unit)


@pytest.mark.parametrize("container", [BACKEND, WORKER])
def test_containers_run_the_release(host, container):
    state = _inspect(host, container)
    assert state["State"]["Running"], host.run(f"docker logs --tail 30 {container}").stderr
    assert state["RestartCount"] == 0
    labels = state["Config"]["Labels"]
    assert state["Config"]["Image"] == f"morpheus/app:{labels['org.morpheus.release']}"
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty-[0-9a-f]{8})?", labels["org.morpheus.release"])
    assert state["HostConfig"]["NetworkMode"] == "host"
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert state["HostConfig"]["Memory"] > 0
    mounts = {m["Destination"]: m for m in state["Mounts"]}
    assert mounts["/run/secrets"]["RW"] is False
    assert mounts["/var/lib/morpheus/storage"]["Source"] == "/var/lib/morpheus/storage"
    # Secrets reach the service as files only: nothing secret in the environment.
    env = "\n".join(state["Config"]["Env"])
    assert "DATABASE_URL" not in env and "REDIS_URL" not in env and "SECRET_KEY" not in env


def test_backend_is_healthy_on_the_private_address_only(host):
    state = _inspect(host, BACKEND)
    assert state["State"]["Health"]["Status"] == "healthy"
    listening = host.run("ss -Hltn").stdout
    assert f"{ADDRESS}:8000 " in listening
    assert "0.0.0.0:8000 " not in listening and "*:8000 " not in listening


def test_worker_drains_before_docker_kills_it(host):
    state = _inspect(host, WORKER)
    assert state["Config"]["StopTimeout"] == 90
    assert "MORPHEUS_SHUTDOWN_GRACE_SECONDS=60" in state["Config"]["Env"]
    assert state["Config"]["Healthcheck"]["Test"] == ["NONE"]


def test_settings_are_readable_by_the_service_only(host):
    secrets = host.file("/etc/morpheus/secrets")
    assert (secrets.uid, secrets.mode) == (10001, 0o500)
    for name in ("morpheus_database_url", "morpheus_redis_url", "morpheus_secret_key"):
        secret = host.file(f"/etc/morpheus/secrets/{name}")
        assert (secret.uid, secret.mode) == (10001, 0o400), name
    env = host.file("/etc/morpheus/morpheus.env")
    assert (env.user, env.mode) == ("root", 0o600)
    assert f"MORPHEUS_API_HOST=api.{DOMAIN}" in env.content_string
    # What the service sees: the secret files, mounted read-only.
    listed = host.run(f"docker exec {BACKEND} ls /run/secrets").stdout.split()
    assert sorted(listed) == ["morpheus_database_url", "morpheus_redis_url", "morpheus_secret_key"]


def test_schema_is_migrated_and_operator_exists(host):
    revision = host.run(f"docker exec {BACKEND} morpheus db current")
    assert "(head)" in revision.stdout, revision.stdout + revision.stderr
    assert _sql(host, "SELECT username FROM users") == "operator"


def test_release_history_and_images(host):
    history = host.file("/var/lib/morpheus/releases/history").content_string.split()
    assert history[-1] == _release_id(host)
    assert host.file("/var/lib/morpheus/releases").mode == 0o750


def test_older_releases_are_pruned_beyond_the_last_three(host):
    """Three earlier releases in the history, and an image that no history names: the
    oldest release's image and the unknown one go, the two newer ones and the current
    one stay."""
    release = _release_id(host)
    old = ["old-release-1", "old-release-2", "old-release-3"]
    for tag in [*old, "never-deployed"]:
        assert host.run(f"docker tag morpheus/app:{release} morpheus/app:{tag}").rc == 0
    history = host.file("/var/lib/morpheus/releases/history").content_string.split()
    kept = [r for r in history if r != release]
    host.run(
        "printf '%s\\n' "
        + " ".join([*kept, *old, release])
        + " > /var/lib/morpheus/releases/history"
    )
    try:
        code, output = _playbook("site.yml", tags="release")
        assert code == 0, output[-3000:]
        tags = set(host.run("docker image ls --format '{{.Tag}}' morpheus/app").stdout.split())
        assert {release, "old-release-2", "old-release-3"} <= tags
        assert "old-release-1" not in tags and "never-deployed" not in tags
    finally:
        for tag in [*old, "never-deployed"]:
            host.run(f"docker image rm morpheus/app:{tag}")
        host.run(
            "printf '%s\\n' " + " ".join([*kept, release]) + " > /var/lib/morpheus/releases/history"
        )


@pytest.mark.parametrize("name", NAMES)
def test_sites_answer_over_https_with_verified_certificates(host, name):
    path = {"app": "/", "dashboard": "/login", "api": "/health"}[name.split(".")[0]]
    result = host.run(
        f"curl -sS -L -o /dev/null -w '%{{http_code}}' --cacert {ROOT_CA} "
        f"--resolve {name}:443:127.0.0.1 https://{name}{path}"
    )
    assert result.stdout == "200", result.stderr


def test_nginx_balances_over_the_backend_containers(host):
    upstream = host.file("/etc/nginx/morpheus/http.conf").content_string
    assert f"server {ADDRESS}:8000 " in upstream


def test_firewall_opens_internal_ports_to_the_private_network_only(host):
    rules = host.run("nft list table inet morpheus").stdout
    assert re.search(r"ip saddr 172\.30\.20\.0/24 tcp dport \{[^}]*6379[^}]*\} accept", rules)
    assert re.search(r"ip saddr 172\.30\.20\.0/24 tcp dport \{[^}]*8000[^}]*\} accept", rules)
    assert re.search(r"tcp dport \{ 80, 443 \} accept", rules)


def test_smoke_test_passes_and_leaves_nothing_behind(host):
    comics_before = _sql(host, "SELECT count(*) FROM comics")
    code, output = _playbook("smoke.yml")
    assert code == 0, output[-3000:]
    assert "Smoke test passed through morpheus-platform" in output
    assert _sql(host, "SELECT count(*) FROM comics") == comics_before
    assert _sql(host, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == "0"


def test_check_mode_on_the_converged_platform_changes_nothing(host):
    code, output = _playbook("site.yml", options=["--check", "--diff"])
    assert code == 0, output[-3000:]
    recap = re.search(r"morpheus-platform\s*:\s*ok=\d+\s+changed=(\d+)", output)
    assert recap, output[-2000:]
    assert recap.group(1) == "0", output[-3000:]


def test_bad_backend_input_stops_before_any_change(host):
    before = _inspect(host, BACKEND)["Id"]
    every_address = "0.0.0.0"  # noqa: S104 - the bad input under test
    code, output = _playbook("site.yml", {"backend_bind_address": every_address}, tags="backend")
    assert code != 0
    assert (
        "backend_bind_address one IP address of the host, its private one, never 0.0.0.0" in output
    )
    assert _inspect(host, BACKEND)["Id"] == before


BROKEN_MIGRATION = textwrap.dedent(
    '''
    """A migration that fails half-way, after committing part of its work (as one that
    cannot run in a transaction does): only the restore of the dump undoes it."""
    import sqlalchemy as sa
    from alembic import op

    revision = "9999_broken"
    down_revision = "{head}"

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
    release = _release_id(host)
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
    users_before = _sql(host, "SELECT count(*) FROM users")
    assert users_before == "1"
    code, output = _playbook("migrate.yml", {"morpheus_release_id": broken_release})
    assert code != 0
    assert f"The migration to morpheus/app:{broken_release} failed" in output
    assert "this migration is broken on purpose" in output
    dump_dir = "/var/backups/morpheus/migrations"
    assert f"The database is restored from {dump_dir}/morpheus-broken-test-" in output
    # The data the migration deleted (and committed) is back, its table is not there, the
    # schema is at the running release's head, and that release still serves.
    assert _sql(host, "SELECT count(*) FROM users") == users_before
    assert _sql(host, "SELECT to_regclass('broken_half_way') IS NULL") == "t"
    assert "(head)" in host.run(f"docker exec {BACKEND} morpheus db current").stdout
    assert _inspect(host, BACKEND)["State"]["Health"]["Status"] == "healthy"
    dumps = host.run("ls /var/backups/morpheus/migrations").stdout.split()
    assert any(d.startswith("morpheus-broken-test-") and d.endswith(".dump") for d in dumps)
