"""Rolling update and rollback across the hosts, under HTTPS load through the edge: the
two api hosts switch one at a time (each on every edge host), then the worker host.
Release B is this tree with a marker line more, built by the release role. B's workers
draw each panel in 1.5 s at least (the local provider's panel time), so that the
rollback finds a comic in the middle of its work: B's worker finishes it while A's
takes the next."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from comics import FINISHED, Submitter, comic_states
from conftest import PROJECT, ansible_playbook, instance, wait_for
from edge_load import EdgeLoad, summary
from rolling import assert_switched, deploy_under_load, marked_release, note
from test_multihost import API_HOSTS, DOMAIN, ROOT_CA

pytestmark = pytest.mark.drill

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


def slow_panels() -> dict:
    """The settings B runs with: the worker host's own, with 1.5 s a panel, and a job may
    take five minutes (its drain 330 s, Docker's stop 360 s), so that a long comic is
    still drawing when the rollback's worker rollout starts, and its drain is bounded by
    B's own timeouts, not by A's shorter ones."""
    env = instance(WORKER_HOST).ansible.get_variables()["morpheus_app_env"]
    return {
        "morpheus_app_env": {**env, "MORPHEUS_LOCAL_PANEL_SECONDS": "1.5"},
        "worker_job_timeout": 300,
        "worker_shutdown_grace": 330,
        "worker_stop_timeout": 360,
    }


# 30 panels: about 45 s of drawing at 1.5 s a panel. The worker rollout drains the old
# worker a few seconds after the comic starts (5 s or less in every run so far): it is
# still drawing then, and the drain waits out the rest.
LONG_NOVEL = "Chapter 1\n\n" + "\n\n".join(
    f"The keeper climbed stair number {n} of the lighthouse at dusk. "
    f'"The lamp must burn tonight," she said to the gull number {n}.'
    for n in range(1, 16)
)
OLD_WORKER_LOG = "/root/old-worker.log"


def finished(ids: list[str]) -> dict[str, tuple[str, int]] | None:
    """The comics' states once every one has ended."""
    states = comic_states(ids)
    return states if all(status in FINISHED for status, _ in states.values()) else None


def live_slot(name: str) -> str:
    return instance(name).file("/var/lib/morpheus/backend/live-slot").content_string.strip()


@pytest.fixture()
def submitter():
    comics = Submitter()
    yield comics
    comics.clean()


def test_rolling_update_switches_one_api_host_at_a_time_under_load(host, releases, load):
    release_a, release_b, tree = releases
    seconds, report, output = deploy_under_load(
        load,
        lambda: playbook(
            "rolling_update.yml",
            {"release": release_b, "release_build_source_dir": str(tree), **slow_panels()},
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
        slot = live_slot(name)
        live = host.file(f"/etc/nginx/morpheus/upstreams/live/{name}.conf")
        assert live.linked_to == f"/etc/nginx/morpheus/upstreams/{name}.{slot}.conf"


def test_rollback_goes_back_across_the_hosts_under_load_and_lets_old_workers_finish(
    host, releases, load, submitter
):
    """The rollback switches the api hosts back to A, then replaces B's worker (slow
    panels) with A's: a comic B's worker is drawing when the worker rollout starts
    (submitted once the last api host has switched) completes there, once; a comic
    queued while the old worker drains is taken by the new one."""
    release_a, release_b, _ = releases
    worker = instance(WORKER_HOST)
    old_worker = running(WORKER_HOST, "morpheus-worker-0")
    # The old worker's log, kept past its removal, says which comics it finished.
    worker.run(f"rm -f {OLD_WORKER_LOG}")
    followed = worker.run(
        f"systemd-run --unit=morpheus-old-worker-log --collect sh -c "
        f"'docker logs -f {old_worker['Id']} > {OLD_WORKER_LOG} 2>&1'"
    )
    assert followed.rc == 0, followed.stderr
    last_api = list(API_HOSTS)[-1]
    slot = live_slot(last_api)
    with ThreadPoolExecutor(1) as pool:
        rollback = pool.submit(deploy_under_load, load, lambda: playbook("rollback.yml"))
        wait_for(f"{last_api}'s switch to A", lambda: live_slot(last_api) != slot, 600, 0.5)
        [drawn] = submitter.submit(1, "Drawn by the old worker", LONG_NOVEL)
        wait_for(
            "the comic's drawing",
            lambda: comic_states([drawn])[drawn][0] == "running",
            120,
            0.5,
        )
        # The new worker runs and the old one drains (it says so once it has stopped
        # taking jobs): queue another.
        wait_for(
            "the old worker's drain",
            lambda: '"draining"' in worker.file(OLD_WORKER_LOG).content_string,
            timeout=300,
            interval=0.5,
        )
        [queued] = submitter.submit(1, "Queued during the drain", LONG_NOVEL)
        seconds, report, output = rollback.result(timeout=1500)
    note("multihost", f"rollback {release_b} -> {release_a}: {seconds:.0f} s; {summary(report)}")
    assert_switched(report, release_b, release_a)
    assert releases_now() == {release_a}
    assert "morpheus-worker-0: drained in" in output
    started = time.monotonic()
    outcome = wait_for(
        "both comics' end", lambda: finished([drawn, queued]), timeout=240, interval=0.5
    )
    assert outcome == {drawn: ("completed", 1), queued: ("completed", 1)}, outcome
    drained = worker.file(OLD_WORKER_LOG).content_string.splitlines()
    # The old worker was drawing it when told to drain, and finished it there.
    assert any(drawn in line for line in drained if '"draining"' in line), drained[-20:]
    assert any(drawn in line for line in drained if "comic completed" in line), drained[-20:]
    assert not any(queued in line for line in drained), drained[-20:]
    worker.run(f"rm -f {OLD_WORKER_LOG}")
    note(
        "multihost",
        f"worker rollout: the comic {release_b}'s worker was drawing completed there at "
        f"attempt 1; the one queued in the drain went to {release_a}'s, both done "
        f"{time.monotonic() - started:.0f} s after the rollback",
    )
