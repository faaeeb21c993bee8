"""Helpers shared by every scenario's testinfra tests."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


def journal(host, unit: str, lines: int = 50) -> str:
    """The unit's last journal lines, for assertion messages."""
    out = host.run(f"journalctl -u {unit} --no-pager -n {lines}")
    return f"\n--- journalctl -u {unit} ---\n{out.stdout}{out.stderr}"


def assert_service_up(host, unit: str) -> None:
    service = host.service(unit)
    assert service.is_enabled, f"{unit} is not enabled{journal(host, unit)}"
    assert service.is_running, f"{unit} is not running{journal(host, unit)}"


@pytest.fixture(scope="session")
def run_playbook() -> Callable[..., subprocess.CompletedProcess]:
    """Run a playbook against this scenario's instances with extra vars (as JSON).

    Used by negative tests: bad variables must stop the play in preflight with a
    message a person can act on.
    """
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("MOLECULE_INVENTORY_FILE is not set: run these tests through `molecule verify`")

    def run(playbook: Path, extra_vars: dict, tags: str | None = None):
        cmd = ["ansible-playbook", "-i", inventory, str(playbook), "-e", json.dumps(extra_vars)]
        if tags:
            cmd += ["--tags", tags]
        return subprocess.run(
            cmd, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=300
        )

    return run
