"""The local default monitors itself: the exporters, Prometheus and Alertmanager run on
the host (it is in the monitoring group), every scrape target answers, the blackbox
probes reach the three public names over TLS signed by the local ACME server, and every
rule file loads. The alert drills themselves are in the monitoring scenario."""

import socket
import urllib.request

import pytest
from conftest import assert_service_up, wait_for
from site_checks import ADDRESS, prometheus_api, promql

# Jobs whose every target must answer. The service's own jobs list both deploy slots,
# of which only the serving one runs: at least one of their targets must answer.
ALL_UP = {"node", "nginx", "postgres", "pgbouncer", "redis", "prometheus", "alertmanager"}
SOME_UP = {"morpheus_api", "morpheus_worker"}
PROBED = {
    "https://app.morpheus.localhost/",
    "https://dashboard.morpheus.localhost/login",
    "https://api.morpheus.localhost/health",
}


@pytest.mark.parametrize(
    "unit",
    [
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-blackbox-exporter",
        "prometheus-node-exporter",
        "prometheus-nginx-exporter",
        "prometheus-postgres-exporter",
        "morpheus-pgbouncer-exporter",
        "prometheus-redis-exporter",
    ],
)
def test_monitoring_services_run(host, unit):
    assert_service_up(host, unit)


def test_every_scrape_target_answers(host):
    def health(last: bool = False):
        targets = prometheus_api(host, "/api/v1/targets")["activeTargets"]
        by_job: dict[str, list[str]] = {}
        for target in targets:
            by_job.setdefault(target["labels"]["job"], []).append(target["health"])
        settled = (
            set(by_job) >= ALL_UP | SOME_UP
            and all(set(by_job[job]) == {"up"} for job in ALL_UP)
            and all("up" in by_job[job] for job in SOME_UP)
        )
        if last:
            return {t["scrapeUrl"]: (t["health"], t["lastError"]) for t in targets}
        return by_job if settled else None

    by_job = wait_for("every target up", health)
    assert set(by_job) >= ALL_UP | SOME_UP, by_job


@pytest.mark.parametrize("metric", ["pg_up", "pgbouncer_up", "redis_up", "nginx_up"])
def test_each_exporter_reaches_its_service(host, metric):
    # A target can be up (the exporter answers) while its login to the service fails.
    results = promql(host, metric)
    assert [r["value"][1] for r in results] == ["1"], results


def test_pgbouncer_pools_and_statistics_are_scraped(host):
    def series(last: bool = False):
        results = promql(host, 'pgbouncer_pools_client_active_connections{database="morpheus"}')
        return results or (None if not last else "no pool series")

    wait_for("PgBouncer's pool series", series)
    up = promql(host, "pgbouncer_up")
    assert [r["value"][1] for r in up] == ["1"], up
    pooled = promql(host, "pgbouncer_stats_queries_pooled_total")
    assert any(float(r["value"][1]) > 0 for r in pooled), pooled


def test_the_api_latency_histogram_counts_requests_by_route(host):
    # The smoke test's submissions went through the API: Prometheus has them by route.
    expr = 'sum by (route) (morpheus_http_request_duration_seconds_count{site="api"})'

    def routes(last: bool = False):
        results = promql(host, expr)
        counted = {r["metric"].get("route"): float(r["value"][1]) for r in results}
        return counted if counted.get("/v1/comics", 0) > 0 or last else None

    counted = wait_for("the API's requests by route", routes)
    # Route templates, never raw paths with ids.
    assert all("{" in route or route.count("/") <= 2 for route in counted), counted


def test_the_public_names_are_probed_over_verified_tls(host):
    def probes(last: bool = False):
        results = promql(host, "probe_success")
        success = {r["metric"]["instance"]: r["value"][1] for r in results}
        if last:
            return success
        return success if set(success) >= PROBED and set(success.values()) == {"1"} else None

    success = wait_for("the probes to succeed", probes)
    assert len(success) == 3, success
    # The certificate's expiry is read from the chain the probe verified.
    expiry = promql(host, "probe_ssl_earliest_cert_expiry - time()")
    days = [float(r["value"][1]) / 86400 for r in expiry]
    # (Pebble's certificates last five years; Let's Encrypt's 90 days.) None is near the
    # 20 days that CertificateExpiringSoon warns at.
    assert len(days) == 3 and all(20 < d < 5 * 366 for d in days), days


def test_every_rule_file_loads(host):
    groups = prometheus_api(host, "/api/v1/rules")["groups"]
    files = {g["file"].rsplit("/", 1)[-1] for g in groups}
    assert {"api.rules.yml", "backup.rules.yml", "platform.rules.yml", "probes.rules.yml"} <= files
    broken = [
        (r["name"], r.get("lastError"))
        for g in groups
        for r in g["rules"]
        if r.get("health") == "err"
    ]
    assert broken == []


def test_alertmanager_is_prometheus_s_alertmanager(host):
    managers = prometheus_api(host, "/api/v1/alertmanagers")["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [f"http://{ADDRESS}:9093/api/v2/alerts"]


def test_monitoring_ports_are_private(host):
    for port in (9090, 9093, 9100, 9113, 9121, 9127, 9187):
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_operators_reach_prometheus_and_alertmanager_but_not_the_exporters():
    # This machine is the scenario's operator network (morpheus_monitoring_operator_networks
    # in host_vars): the firewall lets it reach the two UIs, and nothing else of them.
    for port in (9090, 9093):
        with urllib.request.urlopen(f"http://{ADDRESS}:{port}/-/ready", timeout=10) as answer:
            assert answer.status == 200, port
    for port in (9100, 9187):
        with pytest.raises(OSError):
            socket.create_connection((ADDRESS, port), timeout=3).close()
