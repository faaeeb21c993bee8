"""The Docker CLI, as the runner uses it: every call goes through `docker()` here,
looked up on this module at call time, so that tests replace it in one place."""

from __future__ import annotations

import subprocess


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    # Every command here is a fixed argument list built by this package.
    return subprocess.run(cmd, check=False, text=True, **kwargs)  # noqa: S603


def docker(
    *args: str, timeout: float | None = None, input: str | None = None
) -> subprocess.CompletedProcess:
    """One docker CLI call, output captured."""
    return run(["docker", *args], capture_output=True, timeout=timeout, input=input)


def answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
