"""Shared by the load test's tests: the package behind scripts/loadtest made importable,
and a stand-in for its Docker CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import docker_stand_in
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))

from morpheus_loadtest import docker


@pytest.fixture
def fake_docker(monkeypatch):
    """Replace the load test's Docker CLI: fake_docker({"substring": answer, ...}) returns
    the calls made (docker_stand_in.install says how answers are chosen)."""
    return lambda answers: docker_stand_in.install(monkeypatch, docker, answers)
