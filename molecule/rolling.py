"""What the platform and multihost scenarios' rolling-update checks share: a second
release built from a copy of this checkout, a deploy run under load through the edge,
and the checks of what the load saw. Figures go to .cache/reports/rolling-update.txt."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import PROJECT
from edge_load import EdgeLoad, summary

REPORT = PROJECT / ".cache" / "reports" / "rolling-update.txt"


def note(scenario: str, line: str) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(f"{scenario}: {line}\n")


def marked_release(tree: Path) -> str:
    """Copy this checkout to `tree` with one marker line more in the service's package:
    a real second release (its own image and release id), built by the release role
    with release_build_source_dir pointing there. Returns its release id."""
    subprocess.run(
        [
            "rsync",
            "-a",
            "--exclude",
            ".venv",
            "--exclude",
            ".cache",
            "--exclude",
            "app/build",
            f"{PROJECT}/",
            f"{tree}/",
        ],
        check=True,
    )
    marked = tree / "app" / "src" / "morpheus" / "__init__.py"
    marked.write_text(
        marked.read_text() + "\n# Release marker: the rolling update's second release.\n"
    )
    return subprocess.run(
        [str(tree / "scripts" / "release-id")], capture_output=True, text=True, check=True
    ).stdout.strip()


def deploy_under_load(
    load: EdgeLoad, run, expect_success: bool = True, min_requests: int = 10_000
) -> tuple[float, dict, str]:
    """Run `run()` (a playbook: returns its exit code and output) while the load runs;
    returns the seconds it took, the load's report and the playbook's output."""
    load.start(min_requests)
    started = time.monotonic()
    code, output = run()
    seconds = time.monotonic() - started
    report = load.stop()
    if expect_success:
        assert code == 0, output[-4000:]
    else:
        assert code != 0, output[-4000:]
    return seconds, report, output


def assert_switched(report: dict, old: str, new: str) -> None:
    """No request failed, the load made its count, and the answers went from old to new."""
    assert report["failure_count"] == 0, report["failures"][:10]
    assert report["requests"] >= 10_000, summary(report)
    seen = report["releases"]
    assert old in seen and new in seen, summary(report)
    assert seen[old][0] < seen[new][0] and seen[new][1] > seen[old][1], summary(report)
