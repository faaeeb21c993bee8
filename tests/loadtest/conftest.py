"""Shared by the load test's tests: the package behind scripts/loadtest made importable,
and a stand-in for its Docker CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))

from morpheus_loadtest import docker


@pytest.fixture
def fake_docker(monkeypatch):
    """Replace the load test's Docker CLI.

    fake_docker({"substring": answer, ...}) answers each call with the first answer
    whose key is in the command line: a string is the output of a success, a tuple
    (returncode, stdout, stderr) anything else; no key: a success with no output.
    Returns the list of calls made, each the tuple of arguments after `docker`.
    """

    def install(answers: dict[str, str | tuple[int, str, str]]) -> list[tuple[str, ...]]:
        calls: list[tuple[str, ...]] = []

        def fake(*args: str, timeout=None, input=None) -> subprocess.CompletedProcess:
            calls.append(args)
            line = " ".join(args)
            answer = next((a for key, a in answers.items() if key in line), "")
            code, out, err = (0, answer, "") if isinstance(answer, str) else answer
            return subprocess.CompletedProcess(["docker", *args], code, out, err)

        monkeypatch.setattr(docker, "docker", fake)
        return calls

    return install
