"""The docker role: the engine, its daemon.json, and containers that run and answer."""

import json
import time
from pathlib import Path

import pytest
from conftest import assert_service_up, journal

SCENARIO = Path(__file__).resolve().parent.parent
IMAGE = "morpheus-test/httpd:1"
WEB = "morpheus-test-web"
URL = "http://127.0.0.1:18080/"
PAGE = "morpheus docker test page"

# What converge.yml asks for, as dockerd must read it.
EXPECTED_DAEMON_JSON = {
    "default-address-pools": [{"base": "172.31.0.0/16", "size": 24}],
    "default-ulimits": {"nofile": {"Hard": 16384, "Name": "nofile", "Soft": 4096}},
    "live-restore": True,
    "log-driver": "json-file",
    "log-opts": {"compress": "true", "max-file": "3", "max-size": "5m"},
}

FETCH = (
    'python3 -c "import urllib.request; '
    f"print(urllib.request.urlopen('{URL}', timeout=5).read().decode())\""
)


def docker_info(host) -> dict:
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def fetch(host, attempts: int = 20):
    for _ in range(attempts):
        result = host.run(FETCH)
        if result.rc == 0:
            return result
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def web(host):
    """A busybox httpd image built FROM scratch in the instance, run with a published port."""
    host.run(f"docker rm -f {WEB}")
    build = host.run(
        "set -e; d=$(mktemp -d); cp /bin/busybox $d/busybox; mkdir $d/www; "
        f"echo '{PAGE}' > $d/www/index.html; "
        "printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nCOPY www /www\\n"
        'ENTRYPOINT ["/bin/busybox"]\\nCMD ["httpd", "-f", "-p", "80", "-h", "/www"]\\n\' '
        f"> $d/Dockerfile; docker build -q -t {IMAGE} $d; rm -r $d"
    )
    assert build.rc == 0, f"{build.stdout}{build.stderr}{journal(host, 'docker')}"
    run = host.run(f"docker run -d --name {WEB} -p 127.0.0.1:18080:80 {IMAGE}")
    assert run.rc == 0, f"{run.stderr}{journal(host, 'docker')}"
    yield WEB
    host.run(f"docker rm -f {WEB}")


def test_engine_runs(host):
    assert_service_up(host, "docker")
    assert host.package("docker.io").is_installed
    assert not host.file("/etc/apt/sources.list.d/docker.sources").exists


def test_daemon_json_is_the_merged_configuration(host):
    daemon = host.file("/etc/docker/daemon.json")
    assert daemon.user == "root" and daemon.group == "root" and daemon.mode == 0o644
    assert json.loads(daemon.content_string) == EXPECTED_DAEMON_JSON


def test_docker_info_shows_daemon_json(host):
    info = docker_info(host)
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    # /var/lib/docker is a tmpfs in this scenario, so dockerd picks overlay2 by itself
    # (no storage-driver key: docker_storage_driver is empty).
    assert info["Driver"] == "overlay2", info["Driver"]


def test_container_gets_log_rotation_and_ulimits(host, web):
    log_config = json.loads(
        host.check_output(f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' {web}")
    )
    assert log_config == {
        "Type": "json-file",
        "Config": {"compress": "true", "max-file": "3", "max-size": "5m"},
    }
    soft = host.check_output(f"docker run --rm {IMAGE} sh -c 'ulimit -Sn'")
    hard = host.check_output(f"docker run --rm {IMAGE} sh -c 'ulimit -Hn'")
    assert (soft, hard) == ("4096", "16384")


def test_published_port_answers(host, web):
    result = fetch(host)
    assert result.rc == 0, f"{result.stderr}{host.run(f'docker logs {web}').stderr}"
    assert result.stdout.strip() == PAGE


def test_networks_come_from_the_configured_pool(host):
    host.run("docker network rm morpheus-test-net")
    host.check_output("docker network create morpheus-test-net")
    try:
        subnet = host.check_output(
            "docker network inspect --format '{{(index .IPAM.Config 0).Subnet}}' morpheus-test-net"
        )
    finally:
        host.run("docker network rm morpheus-test-net")
    assert subnet.startswith("172.31."), subnet


def test_docker_user_uses_the_engine(host):
    assert "docker" in host.user("deployer").groups
    result = host.run("sudo -u deployer docker version --format '{{.Server.Version}}'")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip().startswith("20.10")


def test_containers_survive_an_engine_restart(host, web):
    """live-restore: restarting dockerd (what the handler does) keeps containers running."""
    started = host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {web}")
    pid_before = host.check_output("systemctl show --property MainPID --value docker")
    host.check_output("systemctl restart docker")
    assert host.check_output("systemctl show --property MainPID --value docker") != pid_before
    assert host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {web}") == started
    result = fetch(host)
    assert result.rc == 0 and result.stdout.strip() == PAGE, (
        f"{result.stderr}{journal(host, 'docker')}"
    )


def engine_state(host) -> tuple[str, str]:
    """(daemon.json checksum, dockerd's PID): both stay put when a bad run is refused."""
    return (
        host.file("/etc/docker/daemon.json").sha256sum,
        host.check_output("systemctl show --property MainPID --value docker"),
    )


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"docker_daemon_options": {"log-opts": {"max-file": 3}}},
            "docker_daemon_options: 'log-opts.max-file' is 3 (integer); dockerd reads log "
            "options as strings only: write '3' in quotes",
        ),
        (
            {"docker_daemon_options": {"live-restor": True}},
            "docker_daemon_options: 'live-restor' is not a daemon.json key dockerd knows; "
            "did you mean 'live-restore'?",
        ),
        (
            {
                "docker_daemon_options": {
                    "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 9000, "Hard": 100}}
                }
            },
            "docker_daemon_options: 'default-ulimits.nofile' has Soft 9000 above Hard 100",
        ),
        (
            {"docker_log_driver": "syslog"},
            "value of docker_log_driver must be one of: json-file, local, got: syslog",
        ),
        (
            {"docker_daemon_strict": False, "docker_daemon_options": {"no-such-key": True}},
            "docker_daemon_strict is false, but dockerd 20.10.",
        ),
        ({"docker_users": ["nobody-here"]}, "docker_users: user nobody-here does not exist"),
    ],
    ids=[
        "log-opt-type",
        "unknown-key",
        "ulimit-order",
        "log-driver-choice",
        "unchecked-keys",
        "missing-user",
    ],
)
def test_bad_input_stops_the_play_and_leaves_the_engine_alone(
    host, run_playbook, extra_vars, message
):
    before = engine_state(host)
    rc, output = run_playbook(SCENARIO / "bad_input.yml", extra_vars)
    assert rc != 0, output
    assert message in output, output
    assert engine_state(host) == before, "a refused run changed daemon.json or restarted dockerd"
    assert_service_up(host, "docker")
