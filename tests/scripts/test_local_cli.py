"""morpheus_local.cli and scripts/local: arguments, messages and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from morpheus_local import cli
from morpheus_local.paths import ROOT

SCRIPT = ROOT / "scripts" / "local"


def test_failures_print_error_and_next(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "BIN", tmp_path)
    assert cli.main(["up"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and "ansible-playbook is missing" in err[0]
    assert err[1] == "next: run `make setup` first."


def test_the_layout_must_be_known(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["up", "--layout", "cloud"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_an_interrupted_up_exits_130_and_says_how_to_go_on(monkeypatch, capsys):
    def interrupted(layout):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "up", interrupted)
    assert cli.main(["up"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "error: interrupted",
        "next: rerun `make up` to go on (it is idempotent), or `make down`.",
    ]


def test_down_without_an_engine_removes_nothing(fake_docker, capsys):
    fake_docker({"info": (1, "", "Cannot connect to the Docker daemon")})
    assert cli.main(["down"]) == 0
    assert capsys.readouterr().out == "==> no Docker engine answers: nothing to remove\n"


def test_down_counts_what_it_removed(fake_docker, capsys):
    fake_docker({"ps --all": "morpheus-local\n", "volume ls": "morpheus-local-docker\n"})
    assert cli.main(["down"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "==> removed 2 objects labelled org.morpheus.local=1"
    )


def test_down_with_nothing_labelled_says_so(fake_docker, capsys):
    fake_docker({})
    assert cli.main(["down"]) == 0
    assert capsys.readouterr().out == (
        "==> nothing to remove: no container, volume or network is labelled org.morpheus.local=1\n"
    )


def test_scripts_local_runs_on_the_standard_library_alone():
    """`make up` runs it with the system's python3: here without any site-packages."""
    result = subprocess.run(
        [sys.executable, "-S", str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: local [-h] {up,down,status} ...")
    assert (
        "MORPHEUS_LOCAL_HTTPS_PORT   host port for the edge's HTTPS (default 443)" in result.stdout
    )
