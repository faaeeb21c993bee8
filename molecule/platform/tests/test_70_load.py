"""A short load test, as an operator runs one: scripts/loadtest against this scenario's
instance (its inventory, its Docker network, Pebble's root to verify the edge), 10
users for 20 seconds, each from its own address and with its own API key, the
production limits on. It must end with no error and no 429, every comic it submitted completed,
its report written, its keys revoked and its comics deleted. No latency is asserted:
the figures come from `make loadtest` on a quiet machine (loadtest/README.md). The run
stays in .cache/reports/loadtest/."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import PROJECT
from site_checks import ROOT_CA, sql

pytestmark = pytest.mark.drill

NETWORK = "morpheus-molecule-platform"  # molecule.yml
RESULTS = PROJECT / ".cache" / "reports" / "loadtest"
USERS = 10
SECONDS = 20


def test_a_short_load_test_ends_without_errors_and_leaves_nothing(host, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(host.run(f"cat {ROOT_CA}").stdout)
    comics_before = sql(host, "SELECT count(*) FROM comics")
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs_before = set(RESULTS.iterdir())
    done = subprocess.run(
        [
            sys.executable,
            str(PROJECT / "scripts" / "loadtest"),
            *("--inventory", os.environ["MOLECULE_INVENTORY_FILE"]),
            *("--network", NETWORK, "--ca-file", str(ca), "--results", str(RESULTS)),
            *("--users", str(USERS), "--spawn-rate", "10", "--duration", str(SECONDS)),
            *("--drain", "240"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=PROJECT,
    )
    output = done.stdout + done.stderr
    print(output[-1500:])
    assert done.returncode == 0, output[-4000:]
    (run,) = set(RESULTS.iterdir()) - runs_before
    for name in ("report.md", "report.json", "locust.html", "chart.png", "summary.txt"):
        assert (run / name).stat().st_size > 0, name
    report = json.loads((run / "report.json").read_text())
    total = report["total"]
    assert total["requests"] > USERS * 10, total
    assert (total["errors"], total["limited"]) == (0, 0), report["errors"][:10]
    comics = report["comics"]
    assert comics["submitted"] > 0 and comics["completed"] == comics["submitted"], comics
    summary = (run / "summary.txt").read_text()
    assert f"loadtest: {USERS} users" in summary and "0 errors, 0 429s" in summary, summary
    # Its keys revoked, its comics gone: the platform is as the run found it.
    key_name = f"loadtest-{run.name}"
    keys = sql(
        host,
        f"SELECT count(*), count(revoked_at) FROM api_keys WHERE name = '{key_name}'",
    )
    assert keys == f"{USERS}|{USERS}", keys
    deleted = re.search(r"deleted (\d+) of (\d+) comics", output)
    assert deleted and deleted.group(1) == deleted.group(2) == str(comics["submitted"]), output
    assert sql(host, "SELECT count(*) FROM comics") == comics_before
