"""Prometheus, Alertmanager and the node exporter: every target up, every rule file
loaded, a broken rule file refused with nothing changed, and an alert drill through a
webhook receiver (the delay of each notification printed)."""

import json

import pytest
from conftest import PROJECT, ansible_playbook, assert_service_up, scenario_file, wait_for

PROMETHEUS = "http://127.0.0.1:9090"
POSTS = "/var/lib/drill-webhook.jsonl"


def _get(host, url: str) -> dict:
    out = host.run(
        "python3 -c 'import sys, urllib.request; "
        f"print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' '{url}'"
    )
    assert out.rc == 0, f"{url}: {out.stderr}"
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    "unit",
    [
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-node-exporter",
        "prometheus-blackbox-exporter",
    ],
)
def test_services_run(host, unit):
    assert_service_up(host, unit)


def test_retention_and_listen_address_are_set(host):
    args = host.file("/etc/default/prometheus").content_string
    assert "--storage.tsdb.retention.time=30d" in args
    assert "--storage.tsdb.retention.size=20GB" in args
    assert host.socket("tcp://127.0.0.1:9090").is_listening
    assert not host.socket("tcp://0.0.0.0:9090").is_listening


def test_every_target_is_up(host):
    expected = {"node", "prometheus", "alertmanager", "blackbox"}

    def all_up():
        targets = _get(host, f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return health if set(health) == expected and set(health.values()) == {"up"} else None

    health = wait_for("every target up", all_up, timeout=60, interval=1)
    assert health == dict.fromkeys(expected, "up")
    # The probed name resolves through the role's block in /etc/hosts alone.
    probe = _get(host, f"{PROMETHEUS}/api/v1/query?query=probe_success")["data"]["result"]
    assert [(r["metric"]["instance"], r["value"][1]) for r in probe] == [
        ("http://probe.monitoring.test:9090/-/ready", "1")
    ]
    assert "127.0.0.1 probe.monitoring.test" in host.file("/etc/hosts").content_string


def test_every_rule_file_loads(host):
    groups = _get(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    files = {g["file"].rsplit("/", 1)[-1] for g in groups}
    assert files == {
        "api.rules.yml",
        "backup.rules.yml",
        "platform.rules.yml",
        "probes.rules.yml",
        "queue.rules.yml",
        "replication.rules.yml",
        "drill.rules.yml",
    }
    broken = [r["name"] for g in groups for r in g["rules"] if r.get("health") == "err"]
    assert broken == []


def test_a_broken_rule_file_changes_nothing(host):
    before = host.run("sha256sum /etc/prometheus/rules/* /etc/prometheus/prometheus.yml").stdout
    pid = host.run("systemctl show -p MainPID --value prometheus").stdout.strip()
    extra = [
        str(scenario_file("files/drill.rules.yml")),
        str(scenario_file("files/broken.rules.yml")),
    ]
    rc, output = ansible_playbook(
        scenario_file("broken.yml"), extra_vars={"prometheus_extra_rule_files": extra}
    )
    assert rc != 0, output
    assert "promtool refused the rule files; nothing was installed" in output
    assert "broken.rules.yml" in output
    assert (
        host.run("sha256sum /etc/prometheus/rules/* /etc/prometheus/prometheus.yml").stdout
        == before
    )
    assert host.run("systemctl show -p MainPID --value prometheus").stdout.strip() == pid
    assert not host.file("/etc/prometheus/rules/broken.rules.yml").exists


def test_a_probed_name_without_an_address_changes_nothing(host):
    before = host.run("sha256sum /etc/hosts /etc/prometheus/*.yml").stdout
    rc, output = ansible_playbook(
        scenario_file("broken.yml"),
        extra_vars={"prometheus_blackbox_hosts": {"probe.monitoring.test": "edge-1"}},
    )
    assert rc != 0, output
    assert "prometheus_blackbox_hosts: 'edge-1' is not an IP address" in output, output[-2000:]
    assert host.run("sha256sum /etc/hosts /etc/prometheus/*.yml").stdout == before


def _posts(host) -> list[dict]:
    out = host.run(f"cat {POSTS}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _drill_post(host, status: str, after: float):
    for post in _posts(host):
        body = post["body"]
        names = {a["labels"]["alertname"] for a in body["alerts"]}
        if (
            post["received"] > after
            and body["status"] == status
            and "DrillNodeExporterDown" in names
        ):
            return post
    return None


def test_alert_drill_reaches_the_webhook_and_resolves(host):
    stopped = float(host.run("date +%s.%N").stdout)
    host.run("systemctl stop prometheus-node-exporter")
    try:
        fired = wait_for(
            "the firing notification", lambda: _drill_post(host, "firing", stopped), interval=1
        )
    finally:
        started = float(host.run("date +%s.%N").stdout)
        host.run("systemctl start prometheus-node-exporter")
    resolved = wait_for(
        "the resolved notification", lambda: _drill_post(host, "resolved", started), interval=1
    )
    alert = fired["body"]["alerts"][0]
    assert alert["labels"]["severity"] == "page"
    assert alert["labels"]["host"] == "morpheus-monitoring"
    assert fired["body"]["receiver"] == "page"
    figures = (
        f"alert drill: firing notification {fired['received'] - stopped:.1f} s after the node "
        f"exporter stopped, resolved {resolved['received'] - started:.1f} s after it started"
    )
    print(figures)
    reports = PROJECT / ".cache" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "monitoring-drill.txt").write_text(figures + "\n")
