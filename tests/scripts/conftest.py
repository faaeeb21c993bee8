"""Shared by the tests of scripts/: the package behind scripts/local made importable, a
stand-in for its Docker CLI, the local inventories and free ports."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from morpheus_local import hosts, process


@pytest.fixture
def fake_docker(monkeypatch):
    """Replace the Docker CLI of morpheus_local, the one thing its tests mock.

    fake_docker({"substring": answer, ...}) answers each call with the first answer
    whose key is in the command line: a string is the output of a success, a tuple
    (returncode, stdout, stderr) anything else; no key: a success with no output.
    Returns the list of calls made, each the tuple of arguments after `docker`.
    """

    def install(answers: dict[str, str | tuple[int, str, str]]) -> list[tuple[str, ...]]:
        calls: list[tuple[str, ...]] = []

        def docker(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
            calls.append(args)
            line = " ".join(args)
            answer = next((a for key, a in answers.items() if key in line), "")
            code, out, err = (0, answer, "") if isinstance(answer, str) else answer
            return subprocess.CompletedProcess(["docker", *args], code, out, err)

        monkeypatch.setattr(process, "docker", docker)
        return calls

    return install


@pytest.fixture(scope="session")
def inventories() -> dict[str, hosts.Inventory]:
    """Both layouts' inventories, read with the real ansible-inventory of .venv."""
    if not (hosts.BIN / "ansible-inventory").exists():
        pytest.skip("no .venv/bin/ansible-inventory: run `make setup`")
    return {layout: hosts.load_inventory(layout) for layout in hosts.LAYOUTS}


@pytest.fixture
def free_port():
    """A function that returns a TCP port nothing listens on at 127.0.0.1."""

    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    return pick


@pytest.fixture
def taken_port():
    """A TCP port something listens on at 127.0.0.1, for the test's duration."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]
