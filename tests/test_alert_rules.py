"""The alert and recording rules of roles/prometheus load, and every alert has a unit test.

Each ``<name>.rules.yml`` under roles/prometheus/files/rules has ``<name>.test.yml`` beside
it, run with ``promtool test rules``; every alert must fire in at least one of its cases.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "roles" / "prometheus" / "files" / "rules"
RULE_FILES = sorted(RULES.glob("*.rules.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package prometheus; make setup installs it)",
)


def test_there_are_rule_files():
    assert {p.name for p in RULE_FILES} >= {
        "api.rules.yml",
        "probes.rules.yml",
        "queue.rules.yml",
        "platform.rules.yml",
        "backup.rules.yml",
    }


def alerts(rule_file: Path) -> set[str]:
    groups = yaml.safe_load(rule_file.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def alerts_that_fire(test_file: Path) -> set[str]:
    cases = yaml.safe_load(test_file.read_text())["tests"]
    return {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_fires_in_a_unit_test(rule_file):
    test_file = rule_file.with_name(rule_file.name.replace(".rules.yml", ".test.yml"))
    assert test_file.exists(), f"{rule_file.name} has no {test_file.name} beside it"
    untested = alerts(rule_file) - alerts_that_fire(test_file)
    assert not untested, f"alerts never shown firing in {test_file.name}: {sorted(untested)}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_is_routed_and_documented(rule_file):
    runbook = (ROOT / "docs" / "runbooks" / "monitoring.md").read_text()
    groups = yaml.safe_load(rule_file.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert f"### {rule['alert']}" in runbook, f"{rule['alert']} is not in the runbook"


@needs_promtool
@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_rules_check_and_unit_tests_pass(rule_file):
    check = subprocess.run(
        [PROMTOOL, "check", "rules", rule_file.name],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test_file = rule_file.name.replace(".rules.yml", ".test.yml")
    result = subprocess.run(
        [PROMTOOL, "test", "rules", test_file],
        cwd=RULES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_refuses_a_rule_file_that_does_not_parse(tmp_path):
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: up ==\n"
    )
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr)
