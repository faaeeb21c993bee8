"""The README of each data-tier role documents every variable of its argument_specs.

The variable table is the one place an operator reads; this keeps it from drifting
from meta/argument_specs.yml (names, and defaults written the same way).
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ["postgresql", "pgbouncer", "redis", "backup"]


def _table_rows(readme: str) -> dict[str, str]:
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|(.*)$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("role", ROLES)
def test_readme_table_matches_argument_specs(role):
    role_dir = ROOT / "roles" / role
    specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    rows = _table_rows((role_dir / "README.md").read_text())
    assert sorted(set(options) - set(rows)) == [], "variables missing from the README table"
    assert sorted(set(rows) - set(options)) == [], "README rows with no argument spec"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_argument_specs(role):
    role_dir = ROOT / "roles" / role
    specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((role_dir / "defaults" / "main.yml").read_text())
    assert sorted(set(defaults) ^ set(options)) == []
    for name, spec in options.items():
        assert spec.get("description"), f"{name} has no description"
        assert spec.get("default") == defaults[name], (
            f"{name}: default differs from defaults/main.yml"
        )
