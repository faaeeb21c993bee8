"""Running other programs: the Docker CLI and the Ansible tools of .venv.

Every other module talks to Docker through `docker()` here, looked up on this
module at call time, so that tests replace the Docker CLI in one place.
"""

from __future__ import annotations

import os
import subprocess

from .paths import ROOT


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    # Every command here is a fixed argument list built by this package.
    return subprocess.run(cmd, check=False, text=True, **kwargs)  # noqa: S603


def docker(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """One docker CLI call, output captured. The one place this package talks to Docker."""
    return run(["docker", *args], capture_output=True, timeout=timeout)


def docker_answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
