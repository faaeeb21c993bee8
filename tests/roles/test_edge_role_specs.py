"""nginx and letsencrypt: every spec'd variable is in the README table and in the defaults."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
DOCUMENTED = ["nginx", "letsencrypt"]


def spec_options(role):
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def readme_table(role):
    rows = {}
    for line in (ROLES / role / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize("role", DOCUMENTED)
def test_readme_table_matches_argument_specs(role):
    table = readme_table(role)
    options = spec_options(role)
    assert set(table) == set(options)
    for name, spec in options.items():
        assert table[name][1] == spec["type"], name


@pytest.mark.parametrize("role", DOCUMENTED)
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    options = spec_options(role)
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        assert options[name]["default"] == value, name
        assert name.startswith(f"{role}_"), name
