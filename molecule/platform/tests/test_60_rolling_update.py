"""Rolling update and rollback on the single host, under HTTPS load through the edge.

Release B is this tree with one marker line more in the service's package, built by the
release role from a copy of the checkout: a real second image, whose /health names
another release. The load (molecule/shared/files/edge_load.py) runs through the whole
update: at least 10,000 requests from 8 clients, each from its own address, on the
three public names. Figures go to .cache/reports/rolling-update.txt.
"""

import subprocess
import time

import pytest
from conftest import PROJECT
from edge_load import EdgeLoad, summary
from site_checks import BACKEND, NAMES, ROOT_CA, WORKER, docker_inspect, playbook, release_id

INSTANCE = "morpheus-platform"
REPORT = PROJECT / ".cache" / "reports" / "rolling-update.txt"


def note(line: str) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(f"platform: {line}\n")


@pytest.fixture(scope="module")
def releases(host, tmp_path_factory):
    """(A, B, B's checkout): A runs now; B is built from a copy of this checkout."""
    tree = tmp_path_factory.mktemp("release-b") / "tree"
    subprocess.run(
        [
            "rsync",
            "-a",
            "--exclude",
            ".venv",
            "--exclude",
            ".cache",
            "--exclude",
            "app/build",
            f"{PROJECT}/",
            f"{tree}/",
        ],
        check=True,
    )
    marked = tree / "app" / "src" / "morpheus" / "__init__.py"
    marked.write_text(
        marked.read_text() + "\n# Release marker: B, the rolling update's second release.\n"
    )
    release_b = subprocess.run(
        [str(tree / "scripts" / "release-id")], capture_output=True, text=True, check=True
    ).stdout.strip()
    release_a = release_id(host)
    assert release_b != release_a
    return release_a, release_b, tree


@pytest.fixture()
def load(host):
    return EdgeLoad(host, INSTANCE, NAMES, ROOT_CA)


def switch_under_load(host, load, name, extra_vars):
    backend_before = docker_inspect(host, BACKEND)
    worker_before = docker_inspect(host, WORKER)
    load.start()
    started = time.monotonic()
    code, output = playbook(name, extra_vars)
    seconds = time.monotonic() - started
    report = load.stop()
    assert code == 0, output[-4000:]
    return seconds, report, backend_before, worker_before


def assert_switched(report, old, new):
    assert report["failure_count"] == 0, report["failures"][:10]
    assert report["requests"] >= 10_000, summary(report)
    seen = report["releases"]
    assert old in seen and new in seen, summary(report)
    # A answered first and B last: the switch happened under the load.
    assert seen[old][0] < seen[new][0] and seen[new][1] > seen[old][1], summary(report)


def test_rolling_update_to_a_new_release_under_load(host, releases, load):
    release_a, release_b, tree = releases
    seconds, report, backend, worker = switch_under_load(
        host,
        load,
        "rolling_update.yml",
        {"release": release_b, "release_build_source_dir": str(tree)},
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


def test_rollback_to_the_previous_release_under_load(host, releases, load):
    release_a, release_b, _ = releases
    seconds, report, _, _ = switch_under_load(host, load, "rollback.yml", {})
    note(f"rollback {release_b} -> {release_a}: {seconds:.0f} s; {summary(report)}")
    assert_switched(report, release_b, release_a)
    assert release_id(host) == release_a


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
