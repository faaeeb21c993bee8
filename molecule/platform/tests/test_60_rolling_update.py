"""The rolling update on the single host, under HTTPS load through the edge: two broken
releases, made from the running one's image on the host, must be refused and undone
with the load seeing no failure, check mode says what an update would change, and bad
input stops it before anything changes. The load (molecule/shared/files/edge_load.py)
runs from 8 clients, each from its own address, on the three public names. A whole
update to a second release built from this checkout, and the rollback with a comic in
the middle of its drawing, run across the hosts in the multihost scenario. Figures go
to .cache/reports/rolling-update.txt.
"""

import pytest
from edge_load import EdgeLoad, summary
from rolling import deploy_under_load
from rolling import note as report_line
from site_checks import BACKEND, NAMES, ROOT_CA, docker_inspect, playbook, release_id

pytestmark = pytest.mark.drill

INSTANCE = "morpheus-platform"


def note(line: str) -> None:
    report_line("platform", line)


@pytest.fixture()
def load(host):
    return EdgeLoad(host, INSTANCE, NAMES, ROOT_CA)


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
    seconds, report, output = deploy_under_load(
        load, lambda: playbook("rolling_update.yml", {"release": tag}), False, 2000
    )
    note(f"broken release {tag}: stopped and undone in {seconds:.0f} s; {summary(report)}")
    assert f"The rolling update to release {tag} stopped: morpheus-platform" in output
    assert cause in output, output[-3000:]
    assert report["failure_count"] == 0, report["failures"][:10]
    assert release_id(host) == release_a
    assert set(report["releases"]) <= {release_a, tag}
    host.run(f"docker image rm morpheus/app:{tag}")


def test_check_mode_says_what_a_rolling_update_would_change(host):
    release = release_id(host)
    tag = derived_release(host, release, "check-mode", "LABEL org.morpheus.check=1")
    before = docker_inspect(host, BACKEND)["Id"]
    code, output = playbook("rolling_update.yml", {"release": tag}, options=["--check"])
    host.run(f"docker image rm morpheus/app:{tag}")
    assert code == 0, output[-3000:]
    assert "Backend container morpheus-backend-0-next" in output
    assert "changed: [morpheus-platform]" in output
    assert docker_inspect(host, BACKEND)["Id"] == before
    assert release_id(host) == release


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
