"""Drive molecule/shared/files/edge_load.py on an edge instance while a deploy runs
(the platform and multihost scenarios' rolling updates)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "shared" / "files" / "edge_load.py"
REMOTE = "/root/edge_load.py"
OUTPUT = "/root/edge_load.json"
STOP = "/root/edge_load.stop"
UNIT = "morpheus-edge-load"


class EdgeLoad:
    """HTTPS load through the edge instance's nginx on the three public names."""

    def __init__(self, host, instance: str, names: list[str], ca: str, clients: int = 8) -> None:
        self.host = host
        self.instance = instance
        self.names = names
        self.ca = ca
        self.clients = clients

    def start(self, min_requests: int = 10_000) -> None:
        subprocess.run(["docker", "cp", str(SCRIPT), f"{self.instance}:{REMOTE}"], check=True)
        self.host.run(f"systemctl reset-failed {UNIT} 2>/dev/null; rm -f {OUTPUT} {STOP}")
        settings = {
            "EDGE_NAMES": ",".join(self.names),
            "EDGE_CA": self.ca,
            "CLIENTS": str(self.clients),
            "MIN_REQUESTS": str(min_requests),
            "STOP_FILE": STOP,
            "OUTPUT": OUTPUT,
        }
        env = " ".join(f"--setenv={key}={value}" for key, value in settings.items())
        started = self.host.run(f"systemd-run --unit={UNIT} --collect {env} python3 {REMOTE}")
        assert started.rc == 0, started.stderr

    def stop(self, timeout: float = 600.0) -> dict:
        """Ask the load to end (once it made its minimum) and return its report."""
        self.host.run(f"touch {STOP}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.host.run(f"cat {OUTPUT}")
            if report.rc == 0 and report.stdout.strip():
                return json.loads(report.stdout)
            time.sleep(2)
        status = self.host.run(f"systemctl status {UNIT} --no-pager; journalctl -u {UNIT} -n 30")
        raise AssertionError(f"the load did not report within {timeout:.0f} s: {status.stdout}")


def summary(report: dict) -> str:
    releases = ", ".join(
        f"{release} {first:.1f}-{last:.1f} s"
        for release, (first, last) in report["releases"].items()
    )
    return (
        f"{report['requests']} requests in {report['seconds']} s, "
        f"{report['failure_count']} failed, {report['rate_limited']} answered 429, "
        f"{report['retried_on_a_new_connection']} sent again on a new connection; "
        f"releases answering: {releases}"
    )
