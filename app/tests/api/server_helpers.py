"""Run the real service in a child process (Gunicorn or the worker) for tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from morpheus.settings import Settings
from pydantic import SecretStr

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_env(settings: Settings, secrets_dir: Path) -> dict[str, str]:
    """The environment that makes a child process load exactly ``settings``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MORPHEUS_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"MORPHEUS_{name.upper()}"] = str(value)
    env["MORPHEUS_SECRET_KEY"] = settings.secret_key.get_secret_value()
    env["MORPHEUS_SECRETS_DIR"] = str(secrets_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_gunicorn(
    env: dict[str, str], port: int, workers: int, log_path: Path
) -> subprocess.Popen[bytes]:
    env = {**env, "MORPHEUS_BIND": f"127.0.0.1:{port}", "MORPHEUS_WEB_CONCURRENCY": str(workers)}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:morpheus.gunicorn_conf"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
        )


def wait_until_live(
    port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited ({process.returncode}):\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not start in {timeout} s:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Make sure a child is gone (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
