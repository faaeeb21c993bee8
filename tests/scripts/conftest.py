"""Shared by the tests of scripts/: the package behind scripts/local made importable, a
stand-in for its Docker CLI, the local inventories and free ports."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import docker_stand_in
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from morpheus_local import hosts, process


@pytest.fixture
def fake_docker(monkeypatch):
    """Replace the Docker CLI of morpheus_local, the one thing its tests mock:
    fake_docker({"substring": answer, ...}) returns the calls made (docker_stand_in.install
    says how answers are chosen)."""
    return lambda answers: docker_stand_in.install(monkeypatch, process, answers)


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
