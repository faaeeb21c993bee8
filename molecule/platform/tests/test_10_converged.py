"""The converged platform: every service, the release's containers and their settings,
the sites over HTTPS, the firewall, and release pruning."""

import re

import pytest
from conftest import assert_service_up
from site_checks import (
    ADDRESS,
    BACKEND,
    DOMAIN,
    NAMES,
    ROOT_CA,
    WORKER,
    docker_inspect,
    playbook,
    release_id,
    sql,
)


@pytest.mark.parametrize(
    "unit",
    ["docker", "nginx", "pebble", "postgresql@15-main", "pgbouncer", "redis-server", "nftables"],
)
def test_services_run(host, unit):
    assert_service_up(host, unit)


@pytest.mark.parametrize("container", [BACKEND, WORKER])
def test_containers_run_the_release(host, container):
    state = docker_inspect(host, container)
    assert state["State"]["Running"], host.run(f"docker logs --tail 30 {container}").stderr
    assert state["RestartCount"] == 0
    labels = state["Config"]["Labels"]
    assert state["Config"]["Image"] == f"morpheus/app:{labels['org.morpheus.release']}"
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty-[0-9a-f]{8})?", labels["org.morpheus.release"])
    assert state["HostConfig"]["NetworkMode"] == "host"
    assert state["HostConfig"]["ReadonlyRootfs"] is True
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert state["HostConfig"]["Memory"] > 0
    # Least privilege: no capability, none gained through setuid, a bounded process count.
    assert state["HostConfig"]["CapDrop"] == ["ALL"]
    assert state["HostConfig"]["CapAdd"] is None
    assert "no-new-privileges:true" in state["HostConfig"]["SecurityOpt"]
    assert state["HostConfig"]["PidsLimit"] == 512
    status = host.run(f"docker exec {container} cat /proc/1/status").stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    mounts = {m["Destination"]: m for m in state["Mounts"]}
    assert mounts["/run/secrets"]["RW"] is False
    assert mounts["/var/lib/morpheus/storage"]["Source"] == "/var/lib/morpheus/storage"
    # Secrets reach the service as files only: nothing secret in the environment.
    env = "\n".join(state["Config"]["Env"])
    assert "DATABASE_URL" not in env and "REDIS_URL" not in env and "SECRET_KEY" not in env


def test_workers_yield_the_cpu_to_the_backend(host):
    # Docker's CPU shares: a busy worker gets a quarter of what the backend gets of a
    # contended CPU (1024, Docker's default, is left unset), and the kernel applies it.
    assert docker_inspect(host, BACKEND)["HostConfig"]["CpuShares"] == 0
    assert docker_inspect(host, WORKER)["HostConfig"]["CpuShares"] == 256
    weight = host.run(
        f"docker exec {WORKER} sh -c "
        "'cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight'"
    ).stdout.strip()
    # cgroup v1 shows the shares; v2 the weight Docker converts them to.
    assert weight in {"256", "10"}, weight


def test_backend_is_healthy_on_the_private_address_only(host):
    state = docker_inspect(host, BACKEND)
    assert state["State"]["Health"]["Status"] == "healthy"
    listening = host.run("ss -Hltn").stdout
    assert f"{ADDRESS}:8000 " in listening
    assert "0.0.0.0:8000 " not in listening and "*:8000 " not in listening


def test_worker_timeouts_nest_so_it_drains_before_docker_kills_it(host):
    state = docker_inspect(host, WORKER)
    # inventories/local: a job 120 s at most, a drain of 135 s, Docker's kill at 150 s.
    assert state["Config"]["StopTimeout"] == 150
    assert "MORPHEUS_SHUTDOWN_GRACE_SECONDS=135" in state["Config"]["Env"]
    assert "MORPHEUS_JOB_TIMEOUT_SECONDS=120" in state["Config"]["Env"]
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
    assert sql(host, "SELECT username FROM users") == "operator"


def test_release_history_and_images(host):
    history = host.file("/var/lib/morpheus/releases/history").content_string.split()
    assert history[-1] == release_id(host)
    assert host.file("/var/lib/morpheus/releases").mode == 0o750


def test_older_releases_are_pruned_beyond_the_last_three(host):
    """Three earlier releases in the history, and an image that no history names: the
    oldest release's image and the unknown one go, the two newer ones and the current
    one stay."""
    release = release_id(host)
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
        code, output = playbook("site.yml", tags="release")
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


def test_nginx_balances_over_the_serving_slot_of_the_backend(host):
    assert (
        "include morpheus/upstreams/live/*.conf;"
        in host.file("/etc/nginx/morpheus/http.conf").content_string
    )
    slot = host.file("/var/lib/morpheus/backend/live-slot").content_string.strip()
    assert slot == docker_inspect(host, BACKEND)["Config"]["Labels"]["org.morpheus.slot"]
    live = host.file("/etc/nginx/morpheus/upstreams/live/morpheus-platform.conf")
    assert live.linked_to == f"/etc/nginx/morpheus/upstreams/morpheus-platform.{slot}.conf"
    port = {"blue": 8000, "green": 8100}[slot]
    assert f"server {ADDRESS}:{port} " in live.content_string


def test_firewall_opens_internal_ports_to_the_private_network_only(host):
    rules = host.run("nft list table inet morpheus").stdout
    assert re.search(r"ip saddr 172\.30\.20\.0/24 tcp dport \{[^}]*6379[^}]*\} accept", rules)
    assert re.search(r"ip saddr 172\.30\.20\.0/24 tcp dport \{[^}]*8000[^}]*\} accept", rules)
    assert re.search(r"tcp dport \{ 80, 443 \} accept", rules)


def test_the_release_holds_no_test_double(host):
    # RunPod's local fake and its test-only key live with the tests, never in the image.
    found = host.run(
        f"docker exec {BACKEND} sh -c "
        "\"find /opt/morpheus -name 'fake_runpod*'; grep -rlF test-only-runpod-key /opt/morpheus\""
    )
    assert found.stdout == "", found.stdout
    assert host.run(f"docker exec {BACKEND} find /opt/morpheus -name providers").stdout
