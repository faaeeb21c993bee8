"""The release from a private registry: pushed once by the controller, pulled by the
host's engine through the registry's own CA, no credential left behind, and a clear
stop for a wrong login, a release the registry lacks, and a login for another registry."""

import json
import subprocess

import pytest
from conftest import PROJECT, scenario_file

REGISTRY = "172.30.23.10:5000"
IMAGE = f"{REGISTRY}/morpheus/app"
USER = "deployer"
PASSWORD = "registry-test-only-password"  # test-only value (molecule.yml)
CA = f"/etc/docker/certs.d/{REGISTRY}/ca.crt"


@pytest.fixture(scope="module")
def release():
    result = subprocess.run(
        [PROJECT / "scripts" / "release-id"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def _converge(run_playbook, **extra_vars):
    return run_playbook(scenario_file("converge.yml"), extra_vars)


def _registry(host, path):
    result = host.run(f"curl -fsS --cacert {CA} -u {USER}:{PASSWORD} https://{REGISTRY}/v2/{path}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def _image(host, ref):
    result = host.run(f"docker image inspect {ref}")
    return json.loads(result.stdout)[0] if result.rc == 0 else None


@pytest.fixture
def image_removed(host, release, run_playbook):
    """The host without the release, as a new host is; converged back afterwards."""
    assert host.run(f"docker image rm {IMAGE}:{release}").rc == 0
    yield
    code, output = _converge(run_playbook)
    assert code == 0, output[-3000:]


def test_the_controller_pushed_the_release(host, release):
    assert release in _registry(host, "morpheus/app/tags/list")["tags"]


def test_the_host_pulled_the_release(host, release):
    image = _image(host, f"{IMAGE}:{release}")
    assert image is not None, host.run("docker image ls").stdout
    # Only a pulled image carries the registry's digest (a loaded archive has none).
    assert any(d.startswith(f"{IMAGE}@sha256:") for d in image["RepoDigests"]), image["RepoDigests"]
    assert image["Config"]["Labels"]["org.opencontainers.image.revision"] == release


def test_the_release_is_recorded(host, release):
    assert host.file("/var/lib/morpheus/releases/history").content_string.split()[-1] == release


def test_the_engine_trusts_the_registry_ca(host):
    ca = host.file(CA)
    assert (ca.user, ca.mode) == ("root", 0o644)
    assert ca.content_string.startswith("-----BEGIN CERTIFICATE-----")


def test_no_registry_credential_stays_on_the_host(host):
    config = host.file("/root/.docker/config.json")
    if config.exists:
        assert REGISTRY not in json.loads(config.content_string).get("auths", {})


def test_a_wrong_password_stops_the_push(host, release, run_playbook, image_removed):
    code, output = _converge(run_playbook, release_registry_password="wrong")
    assert code != 0
    assert f"The controller could not look up {IMAGE}:{release} in {REGISTRY}" in output
    assert "release_registry_password (the vault)" in output
    assert _image(host, f"{IMAGE}:{release}") is None


def test_a_wrong_password_stops_the_pull(host, release, run_playbook, image_removed):
    code, output = _converge(run_playbook, release_push=False, release_registry_password="wrong")
    assert code != 0
    assert f"morpheus-release could not log in to {REGISTRY} as {USER}" in output
    assert "release_registry_password (the vault)" in output
    assert PASSWORD not in output


def test_a_release_missing_from_the_registry_stops_with_what_to_do(host, run_playbook):
    code, output = _converge(run_playbook, release_push=False, release_id="not-pushed-1")
    assert code != 0
    assert f"morpheus-release could not pull {IMAGE}:not-pushed-1" in output
    assert "Push the release" in output
    # The failed delivery logged out again.
    config = host.file("/root/.docker/config.json")
    if config.exists:
        assert REGISTRY not in json.loads(config.content_string).get("auths", {})


def test_a_login_for_another_registry_is_refused(run_playbook):
    code, output = _converge(run_playbook, release_registry_url="https://registry.example.org")
    assert code != 0
    assert (
        f"release_registry_url names registry.example.org, but release_image_name ({IMAGE}) "
        f"is pulled from {REGISTRY}"
    ) in output


def test_a_ca_that_is_no_certificate_is_refused(run_playbook):
    code, output = _converge(run_playbook, release_registry_ca_cert="/etc/ssl/registry-ca.pem")
    assert code != 0
    assert "release_registry_ca_cert must be the PEM text of the registry's CA" in output
