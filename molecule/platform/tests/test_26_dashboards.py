"""Every query of the Grafana dashboards (roles/grafana/files/dashboards) runs against
the platform's real Prometheus, and each returns series unless tests/grafana_queries.py
says why its panel may rightly be empty on a healthy, quiet platform. Grafana itself
does not run here (see roles/grafana/README.md)."""

import sys

import pytest
from conftest import PROJECT
from site_checks import promql

sys.path.insert(0, str(PROJECT / "tests"))
from grafana_queries import dashboard_queries, may_be_empty

QUERIES = dashboard_queries()


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
    series = promql(host, expr, timeout=10)  # fails unless Prometheus answers success
    if may_be_empty(uid, title) is None:
        assert series, f"{uid} / {title}: no series for {expr}"
