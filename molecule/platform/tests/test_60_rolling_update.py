"""Rolling update and rollback on the single host, under HTTPS load through the edge.

Release B is this tree with one marker line more in the service's package, built by the
release role from a copy of the checkout: a real second image, whose /health names
another release. The load (molecule/shared/files/edge_load.py) runs through the whole
update: at least 10,000 requests from 8 clients, each from its own address, on the
three public names. B's workers draw each panel in 1.5 s at least (the local provider's
panel time), so that the rollback finds a comic in the middle of its work. Two broken
releases, made from A's image on the host, must be refused and undone with the load
seeing no failure. Figures go to .cache/reports/rolling-update.txt.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from edge_load import EdgeLoad, summary
from rolling import assert_switched, deploy_under_load, marked_release
from rolling import note as report_line
from site_checks import (
    BACKEND,
    NAMES,
    ROOT_CA,
    WORKER,
    docker_inspect,
    drill_key,
    playbook,
    release_id,
    states,
    submit,
    wait_until_finished,
)

INSTANCE = "morpheus-platform"


def note(line: str) -> None:
    report_line("platform", line)


@pytest.fixture(scope="module")
def releases(host, tmp_path_factory):
    """(A, B, B's checkout): A runs now; B is built from a copy of this checkout."""
    tree = tmp_path_factory.mktemp("release-b") / "tree"
    release_b = marked_release(tree)
    release_a = release_id(host)
    assert release_b != release_a
    return release_a, release_b, tree


@pytest.fixture()
def load(host):
    return EdgeLoad(host, INSTANCE, NAMES, ROOT_CA)


# The settings B runs with: the local default's, 1.5 s a panel, and a job may take five
# minutes (its drain 330 s, Docker's stop 360 s), so that a long comic is still drawing
# when the rollback's worker rollout starts and its drain is bounded by B's own
# timeouts, not by A's shorter ones.
SLOW_PANELS = {
    "morpheus_app_env": {
        "MORPHEUS_RECONCILER_INTERVAL_SECONDS": "10",
        "MORPHEUS_RECONCILER_GRACE_SECONDS": "15",
        "MORPHEUS_LOCAL_PANEL_SECONDS": "1.5",
    },
    "worker_job_timeout": 300,
    "worker_shutdown_grace": 330,
    "worker_stop_timeout": 360,
}
# 60 panels: about 90 s of drawing at 1.5 s a panel.
LONG_NOVEL = "Chapter 1\n\n" + "\n\n".join(
    f"The keeper climbed stair number {n} of the lighthouse at dusk. "
    f'"The lamp must burn tonight," she said to the gull number {n}.'
    for n in range(1, 31)
)


def switch_under_load(host, load, name, extra_vars, expect_success=True, min_requests=10_000):
    backend_before = docker_inspect(host, BACKEND)
    worker_before = docker_inspect(host, WORKER)
    seconds, report, output = deploy_under_load(
        load, lambda: playbook(name, extra_vars), expect_success, min_requests
    )
    return seconds, report, backend_before, worker_before, output


def submit_one(host, title: str) -> str:
    return submit(host, 1, title, LONG_NOVEL)[0]


def wait_for(what: str, check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def test_rolling_update_to_a_new_release_under_load(host, releases, load):
    release_a, release_b, tree = releases
    seconds, report, backend, worker, _ = switch_under_load(
        host,
        load,
        "rolling_update.yml",
        {"release": release_b, "release_build_source_dir": str(tree), **SLOW_PANELS},
    )
    took = f"{seconds:.0f} s, build included"
    note(f"rolling update {release_a} -> {release_b}: {took}; {summary(report)}")
    assert_switched(report, release_a, release_b)
    assert release_id(host) == release_b
    # New containers, never the old ones recreated in place; the other slot serves now.
    now = docker_inspect(host, BACKEND)
    assert now["Id"] != backend["Id"]
    assert (
        now["Config"]["Labels"]["org.morpheus.slot"]
        != backend["Config"]["Labels"]["org.morpheus.slot"]
    )
    assert docker_inspect(host, WORKER)["Config"]["Labels"]["org.morpheus.release"] == release_b
    assert docker_inspect(host, WORKER)["Id"] != worker["Id"]
    live = host.run("readlink /etc/nginx/morpheus/upstreams/live/morpheus-platform.conf").stdout
    assert now["Config"]["Labels"]["org.morpheus.slot"] in live
    assert host.file("/var/lib/morpheus/backend/live-slot").content_string.strip() in live


def live_slot(host) -> str:
    return host.file("/var/lib/morpheus/backend/live-slot").content_string.strip()


def test_rollback_under_load_lets_the_old_workers_finish_their_jobs(host, releases, load):
    """The rollback replaces B's workers (slow panels) with A's: a comic B's worker is
    drawing when the rollout starts (submitted once the edge has switched to A's
    backend, which comes first) completes there, once; a comic queued while the old
    worker drains is taken by a new one."""
    release_a, release_b, _ = releases
    old_worker = docker_inspect(host, WORKER)
    # The old worker's log, kept past its removal, says which comics it finished.
    host.run("rm -f /root/old-worker.log")
    assert (
        host.run(
            f"systemd-run --unit=morpheus-old-worker-log --collect sh -c "
            f"'docker logs -f {old_worker['Id']} > /root/old-worker.log 2>&1'"
        ).rc
        == 0
    )
    slot = live_slot(host)
    with drill_key(host), ThreadPoolExecutor(1) as pool:
        rollback = pool.submit(switch_under_load, host, load, "rollback.yml", {})
        wait_for("the edge's switch to A's backend", lambda: live_slot(host) != slot, 600)
        running = submit_one(host, "Drawn by the old worker")
        wait_for("the comic's drawing", lambda: states(host, [running])[running][0] == "running")
        # The new worker runs and the old one drains (it says so once it has stopped
        # taking jobs): queue another.
        wait_for(
            "the old worker's drain",
            lambda: '"draining"' in host.file("/root/old-worker.log").content_string,
            timeout=300,
        )
        queued = submit_one(host, "Queued during the drain")
        seconds, report, _, _, output = rollback.result(timeout=900)
        finished = wait_until_finished(host, [running, queued])
        outcome = states(host, [running, queued])
    note(f"rollback {release_b} -> {release_a}: {seconds:.0f} s; {summary(report)}")
    assert_switched(report, release_b, release_a)
    assert release_id(host) == release_a
    for comic in (running, queued):
        status, attempts, pages, distinct = outcome[comic]
        assert (status, attempts) == ("completed", 1), f"{comic}: {outcome[comic]}"
        assert pages == distinct > 0
    drained = host.file("/root/old-worker.log").content_string
    # The old worker was drawing it when told to drain, and finished it.
    draining = [line for line in drained.splitlines() if '"draining"' in line]
    assert any(running in line for line in draining), drained[-2000:]
    completed_there = [line for line in drained.splitlines() if "comic completed" in line]
    assert any(running in line for line in completed_there), drained[-2000:]
    assert queued not in drained, drained[-2000:]
    assert "morpheus-worker-0: drained in" in output
    note(
        f"worker rollout: the comic {release_b}'s worker was drawing completed there at attempt 1, "
        f"{finished:.0f} s after the rollback; the one queued in the drain went to {release_a}'s"
    )


def derived_release(host, base: str, tag: str, dockerfile: str) -> str:
    """A release built on the host from a running one's image, changed by `dockerfile`."""
    build = f"/tmp/release-{tag}"
    host.run(f"rm -rf {build} && mkdir -p {build}")
    host.run(
        f"cat > {build}/Dockerfile <<'EOF'\nFROM morpheus/app:{base}\n"
        f"ENV MORPHEUS_RELEASE_ID={tag}\nLABEL org.opencontainers.image.revision={tag}\n"
        f"{dockerfile}\nEOF"
    )
    built = host.run(f"docker build -q -t morpheus/app:{tag} {build}")
    assert built.rc == 0, built.stderr
    return tag


@pytest.mark.parametrize(
    ("tag", "dockerfile", "cause"),
    [
        # Its health check never passes: the play stops before the edge switches.
        (
            "broken-unhealthy",
            'HEALTHCHECK --interval=2s --timeout=2s --start-period=1s --retries=2 CMD ["false"]',
            "is unhealthy",
        ),
        # Healthy, but it refuses every novel: the smoke test after the first batch fails
        # and the previous release is put back.
        ("broken-smoke", "ENV MORPHEUS_MAX_TEXT_CHARS=10", "The smoke test failed"),
    ],
)
def test_a_broken_release_is_refused_and_undone_under_load(host, load, tag, dockerfile, cause):
    release_a = release_id(host)
    derived_release(host, release_a, tag, dockerfile)
    seconds, report, _, _, output = switch_under_load(
        host, load, "rolling_update.yml", {"release": tag}, expect_success=False, min_requests=2000
    )
    note(f"broken release {tag}: stopped and undone in {seconds:.0f} s; {summary(report)}")
    assert f"The rolling update to release {tag} stopped: morpheus-platform" in output
    assert cause in output, output[-3000:]
    assert report["failure_count"] == 0, report["failures"][:10]
    assert release_id(host) == release_a
    assert set(report["releases"]) <= {release_a, tag}
    host.run(f"docker image rm morpheus/app:{tag}")


def test_check_mode_says_what_a_rolling_update_would_change(host, releases):
    _, release_b, _ = releases
    before = docker_inspect(host, BACKEND)["Id"]
    code, output = playbook("rolling_update.yml", {"release": release_b}, options=["--check"])
    assert code == 0, output[-3000:]
    assert "Backend container morpheus-backend-0-next" in output
    assert "changed: [morpheus-platform]" in output
    assert docker_inspect(host, BACKEND)["Id"] == before


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"release": "0123456789ab-unknown"}, "Release 0123456789ab-unknown is unknown"),
        (
            {"rolling_update_batch": 0},
            "rolling_update_batch must be a number of api hosts, 1 or more",
        ),
    ],
)
def test_bad_input_stops_the_update_before_anything_changes(host, extra_vars, message):
    before = docker_inspect(host, BACKEND)["Id"]
    code, output = playbook("rolling_update.yml", extra_vars)
    assert code != 0
    assert message in output, output[-3000:]
    assert "Nothing was changed" in output
    assert docker_inspect(host, BACKEND)["Id"] == before


def test_an_edge_host_that_cannot_be_reached_stops_the_update(host, tmp_path):
    ghost = tmp_path / "ghost-edge.yml"
    ghost.write_text(
        "all:\n  children:\n    edge:\n      hosts:\n        morpheus-ghost-edge:\n"
        "          ansible_connection: community.docker.docker\n"
        "          morpheus_private_address: 172.30.20.99\n"
    )
    before = docker_inspect(host, BACKEND)["Id"]
    code, output = playbook("rolling_update.yml", {}, options=["-i", str(ghost)])
    assert code != 0
    assert "Edge host(s) morpheus-ghost-edge cannot be reached" in output, output[-3000:]
    assert docker_inspect(host, BACKEND)["Id"] == before
