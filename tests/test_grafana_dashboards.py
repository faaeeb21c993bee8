"""The Grafana dashboards of roles/grafana load as Grafana would, and query what exists.

Without Grafana: each file is checked against a JSON Schema of what file provisioning
needs, and read into Grafana's own dashboard model (grafana-foundation-sdk) to show that
every field is one Grafana knows; the uids are fixed, every panel names a provisioned
data source, every PromQL expression parses with promtool, and every metric it reads is
documented (the service's) or recorded (the rules').
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard, RowPanel
from grafana_queries import (
    DASHBOARDS,
    MAY_BE_EMPTY,
    dashboard_files,
    dashboard_queries,
    load_dashboard,
    panels,
    substitute,
    variable_values,
)

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "grafana"
SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "grafana-dashboard.schema.json").read_text()
)
FILES = dashboard_files()
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package prometheus; make setup installs it)",
)
# The fixed uid of each file: links and bookmarks to a dashboard must never break.
UIDS = {
    "overview.json": "morpheus-overview",
    "api.json": "morpheus-api",
    "queue.json": "morpheus-queue",
    "data-tier.json": "morpheus-data",
    "hosts.json": "morpheus-hosts",
}

register_default_plugins()


def provisioned_datasource_uids() -> set[str]:
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    return {internal["__grafana_prometheus_uid"], internal["__grafana_alertmanager_uid"]}


def test_the_five_dashboards_have_their_fixed_unique_uids():
    uids = {path.name: load_dashboard(path)["uid"] for path in FILES}
    assert uids == UIDS
    assert len(set(uids.values())) == len(uids)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_matches_the_provisioning_schema(path):
    jsonschema.validate(load_dashboard(path), SCHEMA)


def fields_lost(original: Any, parsed: Any, where: str = "") -> list[str]:
    """Where ``original`` holds a key or value that ``parsed`` does not."""
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            return [f"{where}: not an object in Grafana's model"]
        lost = [f"{where}.{key}" for key in original if key not in parsed]
        for key in original.keys() & parsed.keys():
            lost += fields_lost(original[key], parsed[key], f"{where}.{key}")
        return lost
    if isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            return [f"{where}: not the same list in Grafana's model"]
        return [
            miss
            for n, (mine, theirs) in enumerate(zip(original, parsed, strict=True))
            for miss in fields_lost(mine, theirs, f"{where}[{n}]")
        ]
    return [] if original == parsed else [f"{where}: {original!r} read as {parsed!r}"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_field_is_one_of_grafanas_dashboard_model(path):
    data = load_dashboard(path)
    model = Dashboard.from_json(data)
    lost = fields_lost(data, json.loads(JSONEncoder().encode(model)))
    assert not lost, f"fields Grafana's model does not know (a typo?): {lost}"
    for panel in model.panels or []:
        if isinstance(panel, RowPanel):
            continue
        # A panel type no plugin registers leaves its options an untyped dict.
        assert not isinstance(panel.options, dict), f"{panel.title}: unknown type {panel.type_val}"


def test_fields_lost_names_a_misspelt_field():
    data = {"panels": [{"type": "stat", "title": "T", "options": {}, "legendFromat": "x"}]}
    parsed = json.loads(JSONEncoder().encode(Dashboard.from_json(data)))
    assert fields_lost(data, parsed) == [".panels[0].legendFromat"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_and_variable_uses_a_provisioned_datasource(path):
    dashboard = load_dashboard(path)
    provisioned = provisioned_datasource_uids()
    used = [(panel["title"], panel["datasource"]["uid"]) for panel in panels(dashboard)]
    used += [
        (f"{panel['title']} / {target['refId']}", target["datasource"]["uid"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]
    used += [
        (f"variable {variable['name']}", variable["datasource"]["uid"])
        for variable in dashboard["templating"]["list"]
    ]
    unknown = [(where, uid) for where, uid in used if uid not in provisioned]
    assert not unknown, f"data sources the role does not provision ({provisioned}): {unknown}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_panels_do_not_overlap_and_ids_are_unique(path):
    dashboard = load_dashboard(path)
    everything = [*dashboard["panels"]] + [
        inner for row in dashboard["panels"] if row["type"] == "row" for inner in row["panels"]
    ]
    ids = [panel["id"] for panel in everything]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the dashboard"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_lists_every_target_with_plain_values():
    queries = dashboard_queries()
    targets = sum(len(p["targets"]) for path in FILES for p in panels(load_dashboard(path)))
    variables = sum(len(load_dashboard(path)["templating"]["list"]) for path in FILES)
    assert len(queries) == targets + variables
    assert {uid for uid, _, _ in queries} == set(UIDS.values())
    for uid, title, expr in queries:
        assert "$" not in expr, f"{uid} / {title}: a Grafana macro or variable is left: {expr}"
    hosts = [expr for uid, _, expr in queries if uid == "morpheus-hosts"]
    assert any('host=~".*"' in expr for expr in hosts)
    assert ("morpheus-hosts", "variable host", 'up{job="node"}') in queries


@pytest.mark.parametrize(
    ("expr", "values", "message"),
    [
        ("rate(x[$__step])", {}, r"\$__step is neither a Grafana macro this helper knows"),
        ('up{host=~"$hots"}', {"host": ".*"}, r"\$hots is neither .* nor a variable"),
    ],
)
def test_substitute_refuses_what_it_cannot_replace(expr, values, message):
    with pytest.raises(ValueError, match=message):
        substitute(expr, values, "test.json, panel 'P', query A")


def test_a_variable_without_a_stand_in_is_refused():
    dashboard = {"uid": "morpheus-x", "templating": {"list": [{"name": "db", "options": []}]}}
    with pytest.raises(ValueError, match="variable db has neither an All value nor options"):
        variable_values(dashboard)


def test_a_file_that_is_not_json_is_refused(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"uid": "morpheus-x",')
    with pytest.raises(ValueError, match=r"broken.json is not valid JSON: .*; fix the file"):
        dashboard_queries(tmp_path)


@needs_promtool
def test_every_expression_parses(tmp_path):
    queries = dashboard_queries()
    rules = [
        {"record": f"dashboard_query_{n}", "expr": expr} for n, (_, _, expr) in enumerate(queries)
    ]
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        failing = [
            f"{uid} / {title}: {expr}"
            for n, (uid, title, expr) in enumerate(queries)
            if f'"dashboard_query_{n}"' in result.stdout + result.stderr
        ]
        pytest.fail(f"promtool refused expressions: {failing}\n{result.stdout}{result.stderr}")
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


@needs_promtool
def test_a_broken_expression_is_caught(tmp_path):
    rule_file = tmp_path / "broken.rules.yml"
    rule_file.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "r", "expr": "sum by (x"}]}]})
    )
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


METRIC = re.compile(r"\b(morpheus_[a-z0-9_]+)")
RECORDED = re.compile(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b")


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `(morpheus_[a-z0-9_]+)` \|", text, re.M))


def recording_rules() -> set[str]:
    names = set()
    for rule_file in (ROOT / "roles" / "prometheus" / "files" / "rules").glob("*.rules.yml"):
        for group in yaml.safe_load(rule_file.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_the_service_metrics_used_are_documented_and_the_recording_rules_exist():
    documented, recorded = documented_metrics(), recording_rules()
    for uid, title, expr in dashboard_queries():
        # Metric names only: label values (job="morpheus_api") and recorded names aside.
        for name in METRIC.findall(RECORDED.sub("", re.sub(r'"[^"]*"', '""', expr))):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in documented or base in documented, (
                f"{uid} / {title}: {name} is not in docs/metrics.md"
            )
        for rule in RECORDED.findall(expr):
            assert rule in recorded, f"{uid} / {title}: {rule} is not a recording rule"


def test_the_role_ships_exactly_these_dashboards():
    assert sorted(p.name for p in DASHBOARDS.glob("*")) == sorted(UIDS)


def test_every_panel_allowed_to_be_empty_exists():
    titles = {(uid, title) for uid, title, _ in dashboard_queries()}
    assert set(MAY_BE_EMPTY) <= titles, set(MAY_BE_EMPTY) - titles
