"""A stand-in for a Docker CLI wrapper, shared by the tests of scripts/ and loadtest/."""

from __future__ import annotations

import subprocess
from types import ModuleType

import pytest


def install(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    answers: dict[str, str | tuple[int, str, str]],
) -> list[tuple[str, ...]]:
    """Replace `module.docker` with a stand-in answering each call with the first answer
    whose key is in the command line: a string is the output of a success, a tuple
    (returncode, stdout, stderr) anything else; no key: a success with no output.
    Returns the list of calls made, each the tuple of arguments after `docker`.
    """
    calls: list[tuple[str, ...]] = []

    def docker(*args: str, **_options: object) -> subprocess.CompletedProcess:
        calls.append(args)
        line = " ".join(args)
        answer = next((a for key, a in answers.items() if key in line), "")
        code, out, err = (0, answer, "") if isinstance(answer, str) else answer
        return subprocess.CompletedProcess(["docker", *args], code, out, err)

    monkeypatch.setattr(module, "docker", docker)
    return calls
