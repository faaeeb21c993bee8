"""Every PromQL query of the Grafana dashboards, ready to send to Prometheus.

The dashboards (``roles/grafana/files/dashboards/*.json``) use Grafana's interval macros
and template variables; :func:`dashboard_queries` replaces them with plain values
(``$__rate_interval`` -> ``5m``, a variable -> its "All" value) so that each expression
can be parsed (``promtool check rules``, in tests/test_grafana_dashboards.py) or run
against a real Prometheus, as a scenario that converges the monitoring host can do::

    from grafana_queries import dashboard_queries

    for uid, title, expr in dashboard_queries():
        answer = prometheus_query(expr)  # GET /api/v1/query?query=...
        if not may_be_empty(uid, title):
            assert answer["data"]["result"], f"{uid} / {title}: no series for {expr}"

Import it by putting this folder (``tests/``) on ``sys.path``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "roles" / "grafana" / "files" / "dashboards"

# Grafana's own macros, with the values a query run by hand would use.
MACROS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}
VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")

_NO_5XX = "the error ratios divide the 5xx rate, which has no series until a 5xx is answered"
# Panels some of whose queries rightly return nothing on a healthy, quiet platform.
MAY_BE_EMPTY = {
    ("morpheus-overview", "Availability by site (answers)"): _NO_5XX,
    ("morpheus-overview", "Error budget left by site (answers)"): _NO_5XX,
    ("morpheus-overview", "Error ratio by site (5 m)"): _NO_5XX,
    ("morpheus-overview", "Burn rate by site (1 h)"): _NO_5XX,
    ("morpheus-overview", "Alerts firing"): "no alert fires on a healthy platform",
    ("morpheus-api", "5xx ratio by site"): _NO_5XX,
    ("morpheus-api", "Errors per second by route and status"): "no request was refused yet",
    ("morpheus-api", "Rate-limited requests per second"): "no limit was reached yet",
    ("morpheus-queue", "Circuit breaker state"): "only the RunPod provider has a circuit",
    ("morpheus-queue", "Provider errors per second"): "no provider call failed yet",
    ("morpheus-queue", "Provider call latency p95"): "only the RunPod provider is timed",
    ("morpheus-data", "Replication lag"): "PostgreSQL has no replica",
    ("morpheus-data", "Replication"): "Redis has no replica (redis_master_link_up)",
}


def may_be_empty(uid: str, title: str) -> str | None:
    """Why the panel's queries may rightly return no series, or None: they must."""
    return MAY_BE_EMPTY.get((uid, title))


def dashboard_files(folder: Path = DASHBOARDS) -> list[Path]:
    return sorted(folder.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not valid JSON: {exc}; fix the file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} must hold one dashboard (a JSON object)")
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included (rows themselves left out)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each template variable's stand-in: its "All" value, else its first option."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
        elif variable.get("options"):
            values[name] = str(variable["options"][0]["value"])
        else:
            raise ValueError(
                f"dashboard {dashboard.get('uid')}: variable {name} has neither an All "
                "value nor options; give it includeAll with an allValue"
            )
    return values


def substitute(expr: str, values: dict[str, str], where: str) -> str:
    """``expr`` with Grafana's macros and variables replaced by plain values."""
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(
                f"{where}: ${name} is neither a Grafana macro this helper knows "
                f"({', '.join(MACROS)}) nor a variable of the dashboard"
            )
        return values[name]

    return VARIABLE.sub(replace, expr)


def dashboard_queries(folder: Path = DASHBOARDS) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL expression) for every query of every panel."""
    queries: list[tuple[str, str, str]] = []
    for path in dashboard_files(folder):
        dashboard = load_dashboard(path)
        uid = str(dashboard.get("uid"))
        values = variable_values(dashboard)
        for panel in panels(dashboard):
            title = str(panel.get("title"))
            for target in panel.get("targets", []):
                if target.get("hide"):
                    continue
                where = f"{path.name}, panel {title!r}, query {target.get('refId')}"
                queries.append((uid, title, substitute(target["expr"], values, where)))
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)", text or "")
            if match:  # the series the variable's values come from
                queries.append((uid, f"variable {variable['name']}", match.group(1)))
    return queries
