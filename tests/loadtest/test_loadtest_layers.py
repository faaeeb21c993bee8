"""The load test's pure parts import nothing outside the standard library and the
package itself, so that the runner and the tests need neither Locust nor matplotlib;
only client.py, chart.py and the locustfile may (they run in the load generator's image)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "loadtest" / "morpheus_loadtest"
PURE = [
    "addresses",
    "arp",
    "bare",
    "capacity",
    "config",
    "docker",
    "errors",
    "histograms",
    "journeys",
    "novels",
    "pages",
    "queue",
    "report",
]
# Outside the container too: the runner (ansible-runner, imported when it runs the
# playbook) and the generator (requests, which .venv has as well).
ALLOWED = {"runner": {"ansible_runner"}, "cli": set(), "image": set(), "generator": {"requests"}}


def imported(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names - {"__future__"}


@pytest.mark.parametrize("module", PURE)
def test_a_pure_part_imports_the_standard_library_only(module):
    assert imported(module) - set(sys.stdlib_module_names) == set()


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_the_host_side_needs_neither_locust_nor_matplotlib(module):
    assert imported(module) - set(sys.stdlib_module_names) <= ALLOWED[module]
