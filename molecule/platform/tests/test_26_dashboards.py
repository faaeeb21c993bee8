"""Every query of the Grafana dashboards (roles/grafana/files/dashboards) runs against
the platform's real Prometheus, and each returns series unless tests/grafana_queries.py
says why its panel may rightly be empty on a healthy, quiet platform. Grafana itself
does not run here (see roles/grafana/README.md)."""

import sys

import pytest
from conftest import PROJECT
from site_checks import promql_batch

sys.path.insert(0, str(PROJECT / "tests"))
from grafana_queries import dashboard_queries, may_be_empty

QUERIES = dashboard_queries()


@pytest.fixture(scope="module")
def answers(host) -> dict[str, dict]:
    """Every panel's query, run once against the platform's Prometheus."""
    exprs = sorted({expr for _, _, expr in QUERIES})
    return dict(zip(exprs, promql_batch(host, exprs), strict=True))


def test_the_dashboards_have_queries():
    assert {uid for uid, _, _ in QUERIES} == {
        "morpheus-overview",
        "morpheus-api",
        "morpheus-queue",
        "morpheus-data",
        "morpheus-hosts",
    }


@pytest.mark.parametrize(("uid", "title", "expr"), QUERIES, ids=[f"{u}/{t}" for u, t, _ in QUERIES])
def test_every_panel_query_runs_and_returns_series(answers, uid, title, expr):
    answer = answers[expr]
    assert answer["status"] == "success", f"{uid} / {title}: {answer}"
    if may_be_empty(uid, title) is None:
        assert answer["data"]["result"], f"{uid} / {title}: no series for {expr}"
