"""Every role documents exactly the variables its argument_specs declare."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = sorted(
    p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists()
)
ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|")


def spec_options(role: Path) -> dict:
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"].get("options", {})


def readme_variables(role: Path) -> set[str]:
    readme = role / "README.md"
    assert readme.exists(), f"{role.name} has no README.md"
    return {m.group(1) for line in readme.read_text().splitlines() if (m := ROW.match(line))}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_table_matches_argument_specs(role):
    documented, declared = readme_variables(role), set(spec_options(role))
    assert documented - declared == set(), "in the README but not in meta/argument_specs.yml"
    assert declared - documented == set(), "in meta/argument_specs.yml but not in the README"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role):
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}) or {}
    declared = spec_options(role)
    assert set(defaults) - set(declared) == set(), "defaults without an argument spec"
    prefix = f"{role.name}_"
    for name, option in declared.items():
        assert name.startswith(prefix), f"{name}: public variables start with {prefix}"
        assert option.get("description"), f"{name} has no description"
        assert option.get("type"), f"{name} has no type"
        if "default" in option and name in defaults:
            assert option["default"] == defaults[name], f"{name}: default differs from defaults"
