"""Every query of the Grafana dashboards (roles/grafana/files/dashboards) runs against
the platform's real Prometheus, and each returns series unless tests/grafana_queries.py
says why its panel may rightly be empty on a healthy, quiet platform. Grafana itself
does not run here (see roles/grafana/README.md)."""

import json
import sys
from urllib.parse import quote

import pytest
from conftest import PROJECT

sys.path.insert(0, str(PROJECT / "tests"))
from grafana_queries import dashboard_queries, may_be_empty

PROMETHEUS = "http://172.30.20.10:9090"  # morpheus_private_address (host_vars)
QUERIES = dashboard_queries()


def query(host, expr: str) -> dict:
    out = host.run(
        "python3 -c 'import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "
        f"'{PROMETHEUS}/api/v1/query?query={quote(expr)}'"
    )
    assert out.rc == 0, f"{expr}: {out.stderr}"
    return json.loads(out.stdout)


def test_the_dashboards_have_queries():
    assert {uid for uid, _, _ in QUERIES} == {
        "morpheus-overview",
        "morpheus-api",
        "morpheus-queue",
        "morpheus-data",
        "morpheus-hosts",
    }


@pytest.mark.parametrize(("uid", "title", "expr"), QUERIES, ids=[f"{u}/{t}" for u, t, _ in QUERIES])
def test_every_panel_query_runs_and_returns_series(host, uid, title, expr):
    answer = query(host, expr)
    assert answer["status"] == "success", answer
    if may_be_empty(uid, title) is None:
        assert answer["data"]["result"], f"{uid} / {title}: no series for {expr}"
