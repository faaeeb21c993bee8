"""The role's PgBouncer exporter renders the console's rows in Prometheus's text format,
with the metric names the alert rules use."""

import importlib.machinery
import importlib.util
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "roles" / "prometheus_exporters" / "files" / "morpheus-pgbouncer-exporter"
RULES = ROOT / "roles" / "prometheus" / "files" / "rules" / "platform.rules.yml"


def load():
    loader = importlib.machinery.SourceFileLoader("morpheus_pgbouncer_exporter", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


exporter = load()

# As PgBouncer 1.18 answers SHOW POOLS and SHOW STATS (columns abridged).
POOLS = [
    {"database": "morpheus", "user": "morpheus", "cl_active": 3, "cl_waiting": 2,
     "sv_active": 3, "sv_idle": 1, "sv_used": 0, "sv_tested": 0, "sv_login": 0,
     "maxwait": 1, "maxwait_us": 250000, "pool_mode": "transaction"},
    {"database": "pgbouncer", "user": "pgbouncer", "cl_active": 1, "cl_waiting": 0,
     "sv_active": 0, "sv_idle": 0, "sv_used": 0, "sv_tested": 0, "sv_login": 0,
     "maxwait": 0, "maxwait_us": 0, "pool_mode": "statement"},
]  # fmt: skip
STATS = [
    {"database": "morpheus", "total_xact_count": 12345678901, "total_query_count": 20,
     "total_received": 4096, "total_sent": 8192, "total_xact_time": 1500000,
     "total_query_time": 1250000, "total_wait_time": 3, "avg_xact_count": 1},
]  # fmt: skip


def samples() -> dict[tuple[str, tuple], float]:
    text = "\n".join(exporter.render(POOLS, STATS)) + "\n"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_pools_are_gauges_per_database_and_user():
    found = samples()
    pool = (("database", "morpheus"), ("user", "morpheus"))
    assert found[("pgbouncer_pools_client_waiting_connections", pool)] == 2
    assert found[("pgbouncer_pools_server_idle_connections", pool)] == 1
    assert found[("pgbouncer_pools_client_maxwait_seconds", pool)] == 1.25
    assert found[("pgbouncer_up", ())] == 1


def test_stats_are_counters_in_seconds_without_lost_digits():
    found = samples()
    database = (("database", "morpheus"),)
    assert found[("pgbouncer_stats_sql_transactions_pooled_total", database)] == 12345678901
    assert found[("pgbouncer_stats_queries_duration_seconds_total", database)] == 1.25
    assert found[("pgbouncer_stats_client_wait_seconds_total", database)] == 3e-6


def test_label_values_are_escaped():
    rows = [dict(POOLS[0], database='we"ird\\db\nname')]
    text = "\n".join(exporter.render(rows, [])) + "\n"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["pgbouncer_pools_client_active_connections"].samples
    assert sample.labels["database"] == 'we"ird\\db\nname'


def test_the_alert_rules_use_metrics_it_exports():
    names = {name for name, _ in samples()}
    rules = RULES.read_text()
    assert "pgbouncer_up" in rules and "pgbouncer_up" in names
    assert "pgbouncer_pools_client_waiting_connections" in rules
    assert "pgbouncer_pools_client_waiting_connections" in names
