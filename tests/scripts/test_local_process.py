"""morpheus_local.process: the Docker CLI and the Ansible tools' environment."""

from __future__ import annotations

import subprocess

from morpheus_local import process
from morpheus_local.paths import ROOT


def test_the_ansible_tools_read_the_checkouts_ansible_cfg(monkeypatch):
    monkeypatch.setenv("MORPHEUS_LOCAL_PROBE", "kept")
    env = process.ansible_env()
    assert env["ANSIBLE_CONFIG"] == str(ROOT / "ansible.cfg")
    assert env["MORPHEUS_LOCAL_PROBE"] == "kept"


def test_no_docker_client_means_no_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert process.docker_answers() is False


def test_an_engine_that_does_not_answer_in_time_means_no_engine(monkeypatch):
    def slow(*args, timeout=None):
        raise subprocess.TimeoutExpired(["docker", *args], timeout)

    monkeypatch.setattr(process, "docker", slow)
    assert process.docker_answers() is False


def test_a_docker_call_captures_its_output(monkeypatch, tmp_path):
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\necho "out $*"; echo err >&2; exit 3\n')
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = process.docker("ps", "--all")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out ps --all\n", "err\n")
