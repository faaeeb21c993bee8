"""The platform across five hosts: the smoke test passes through the edge, requests are
spread over both API hosts, and the site keeps answering with one API host's containers
stopped."""

import json
from collections import Counter

import pytest
from conftest import PROJECT, ansible_playbook, instance

NETWORK = "172.30.21"
API_HOSTS = {"morpheus-mh-api-1": f"{NETWORK}.12", "morpheus-mh-api-2": f"{NETWORK}.13"}
DOMAIN = "morpheus.localhost"
ROOT_CA = "/etc/pebble/issuing-root.pem"

testinfra_hosts = ["morpheus-mh-edge"]


def _get(edge, name, path, count=1):
    """HTTP status codes of `count` requests through the edge's nginx."""
    result = edge.run(
        f"for i in $(seq {count}); do curl -sS -o /dev/null -w '%{{http_code}}\\n' "
        f"--cacert {ROOT_CA} --resolve {name}:443:127.0.0.1 https://{name}{path}; done"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.split()


def _upstreams(edge, log, since_line):
    """Counter of the upstream addresses nginx used in its access log after a line."""
    lines = edge.file(log).content_string.splitlines()[since_line:]
    return Counter(json.loads(line)["upstream_addr"] for line in lines if line.strip())


def _log_length(edge, log):
    return len(edge.file(log).content_string.splitlines())


def test_edge_pool_lists_both_api_hosts(host):
    for name, address in API_HOSTS.items():
        live = host.file(f"/etc/nginx/morpheus/upstreams/live/{name}.conf")
        assert live.linked_to == f"/etc/nginx/morpheus/upstreams/{name}.blue.conf"
        assert f"server {address}:8000 " in live.content_string
        green = host.file(f"/etc/nginx/morpheus/upstreams/{name}.green.conf").content_string
        assert f"server {address}:8100 " in green


@pytest.mark.parametrize("name", API_HOSTS)
def test_api_hosts_run_their_backend_on_their_private_address(name):
    api = instance(name)
    state = json.loads(api.check_output("docker inspect morpheus-backend-0"))[0]
    assert state["State"]["Health"]["Status"] == "healthy"
    assert f"{API_HOSTS[name]}:8000 " in api.run("ss -Hltn").stdout


def test_workers_and_api_share_storage():
    api = instance("morpheus-mh-api-1")
    worker = instance("morpheus-mh-worker")
    api.run("rm -f /var/lib/morpheus/storage/.shared-probe")
    assert api.run("echo shared > /var/lib/morpheus/storage/.shared-probe").rc == 0
    assert worker.file("/var/lib/morpheus/storage/.shared-probe").content_string == "shared\n"
    api.run("rm -f /var/lib/morpheus/storage/.shared-probe")


def test_data_tier_is_closed_to_the_edge(host):
    # The database host opens PgBouncer and Redis to the private network (the edge is on
    # it) but PostgreSQL's own port to nobody.
    db = instance("morpheus-mh-db")
    rules = db.run("nft list table inet morpheus").stdout
    assert "6432" in rules and "6379" in rules
    probe = host.run(f"timeout 3 bash -c '</dev/tcp/{NETWORK}.15/5432'")
    assert probe.rc != 0


def test_requests_are_spread_over_both_api_hosts(host):
    log = "/var/log/nginx/api.access.log"
    start = _log_length(host, log)
    assert set(_get(host, f"api.{DOMAIN}", "/health/live", count=40)) == {"200"}
    used = _upstreams(host, log, start)
    for address in API_HOSTS.values():
        assert used[f"{address}:8000"] >= 5, used


def test_smoke_test_passes_through_the_edge():
    code, output = ansible_playbook(PROJECT / "playbooks" / "smoke.yml", timeout=900)
    assert code == 0, output[-3000:]
    assert "Smoke test passed through morpheus-mh-edge" in output


@pytest.fixture()
def api_2_stopped():
    api = instance("morpheus-mh-api-2")
    assert api.run("docker stop morpheus-backend-0").rc == 0
    yield
    api.run("docker start morpheus-backend-0")
    for _ in range(60):
        health = api.run(
            "docker inspect --format '{{.State.Health.Status}}' morpheus-backend-0"
        ).stdout.strip()
        if health == "healthy":
            break
        api.run("sleep 2")


def test_site_keeps_answering_with_one_api_host_down(host, api_2_stopped):
    log = "/var/log/nginx/storefront.access.log"
    start = _log_length(host, log)
    codes = _get(host, f"app.{DOMAIN}", "/", count=30)
    assert codes == ["200"] * 30
    used = _upstreams(host, log, start)
    # Every answer came from api-1 (nginx retries a refused connection on the next server).
    assert set(used) <= {
        f"{API_HOSTS['morpheus-mh-api-1']}:8000",
        f"{API_HOSTS['morpheus-mh-api-2']}:8000, {API_HOSTS['morpheus-mh-api-1']}:8000",
    }, used
    code, output = ansible_playbook(PROJECT / "playbooks" / "smoke.yml", timeout=900)
    assert code == 0, output[-3000:]
