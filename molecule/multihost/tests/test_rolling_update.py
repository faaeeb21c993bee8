"""Rolling update and rollback across the hosts, under HTTPS load through the edge: the
two api hosts switch one at a time (each on every edge host), then the worker host.
Release B is this tree with a marker line more, built by the release role."""

import json

import pytest
from conftest import PROJECT, ansible_playbook, instance
from edge_load import EdgeLoad, summary
from rolling import assert_switched, deploy_under_load, marked_release, note
from test_multihost import API_HOSTS, DOMAIN, ROOT_CA

testinfra_hosts = ["morpheus-mh-edge"]
NAMES = [f"app.{DOMAIN}", f"dashboard.{DOMAIN}", f"api.{DOMAIN}"]
BACKEND = "morpheus-backend-0"
WORKER_HOST = "morpheus-mh-worker"


def running(name: str, container: str) -> dict:
    return json.loads(instance(name).check_output(f"docker inspect {container}"))[0]


def releases_now() -> set[str]:
    hosts = {**{name: BACKEND for name in API_HOSTS}, WORKER_HOST: "morpheus-worker-0"}
    return {
        running(name, container)["Config"]["Labels"]["org.morpheus.release"]
        for name, container in hosts.items()
    }


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """(A, B, B's checkout): A runs everywhere now; B is built from a copy."""
    [release_a] = releases_now()
    tree = tmp_path_factory.mktemp("release-b") / "tree"
    release_b = marked_release(tree)
    assert release_b != release_a
    return release_a, release_b, tree


@pytest.fixture()
def load(host):
    return EdgeLoad(host, "morpheus-mh-edge", NAMES, ROOT_CA)


def playbook(name, extra_vars=None):
    return ansible_playbook(PROJECT / "playbooks" / name, extra_vars, timeout=1500)


def test_rolling_update_switches_one_api_host_at_a_time_under_load(host, releases, load):
    release_a, release_b, tree = releases
    seconds, report, output = deploy_under_load(
        load,
        lambda: playbook(
            "rolling_update.yml", {"release": release_b, "release_build_source_dir": str(tree)}
        ),
    )
    note(
        "multihost",
        f"rolling update {release_a} -> {release_b}: {seconds:.0f} s; {summary(report)}",
    )
    assert_switched(report, release_a, release_b)
    assert releases_now() == {release_b}
    # One batch a host: api-1 switched (and smoke-tested) before api-2 started.
    first = output.index("PLAY [API hosts, batch by batch]")
    assert output.index("morpheus-mh-api-1", first) < output.index("morpheus-mh-api-2", first)
    for name in API_HOSTS:
        slot = instance(name).file("/var/lib/morpheus/backend/live-slot").content_string.strip()
        live = host.file(f"/etc/nginx/morpheus/upstreams/live/{name}.conf")
        assert live.linked_to == f"/etc/nginx/morpheus/upstreams/{name}.{slot}.conf"


def test_rollback_goes_back_across_the_hosts_under_load(host, releases, load):
    release_a, release_b, _ = releases
    seconds, report, _ = deploy_under_load(load, lambda: playbook("rollback.yml"))
    note("multihost", f"rollback {release_b} -> {release_a}: {seconds:.0f} s; {summary(report)}")
    assert_switched(report, release_b, release_a)
    assert releases_now() == {release_a}
