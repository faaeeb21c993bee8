"""morpheus_local.output: what `up` prints, its progress lines and its closing summary."""

from __future__ import annotations

import pytest
from morpheus_local import output
from morpheus_local.hosts import Host, Inventory

EDGE = Host("morpheus-local", "172.30.10.10", frozenset({"edge", "acme", "api"}))
DEFAULT_PORTS = {443: 443, 80: 80}


def inventory(**groups: list[str]) -> Inventory:
    return Inventory("inventories/local", [EDGE], {"edge": [EDGE.name], **groups})


def test_progress_lines_start_with_an_arrow(capsys):
    output.say("creating network morpheus-local")
    assert capsys.readouterr().out == "==> creating network morpheus-local\n"


def test_urls_on_port_443_have_no_port():
    assert output.url_lines("morpheus.localhost", 443) == [
        "https://app.morpheus.localhost/",
        "https://dashboard.morpheus.localhost/",
        "https://api.morpheus.localhost/",
    ]


def test_urls_on_another_port_carry_it():
    assert output.url_lines("morpheus.localhost", 8443) == [
        "https://app.morpheus.localhost:8443/",
        "https://dashboard.morpheus.localhost:8443/",
        "https://api.morpheus.localhost:8443/",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"), [(5, "5 s"), (59.4, "59 s"), (75, "1 min 15 s"), (600, "10 min 0 s")]
)
def test_durations_read_in_minutes_and_seconds(seconds, shown):
    assert output.duration(seconds) == shown


def test_summary_prints_the_urls_the_ca_and_the_login():
    variables = {
        "nginx_domain": "example.localhost",
        "morpheus_admin_username": "admin",
        "vault_morpheus_admin_password": "local-only-admin",  # test-only value
    }
    text = "\n".join(output.summary(inventory(), variables, {443: 8443, 80: 8080}, 75))
    assert "https://dashboard.example.localhost:8443/" in text
    assert "curl --cacert .cache/local/ca.pem https://app.example.localhost:8443/" in text
    assert "/usr/local/share/ca-certificates/morpheus-local.crt" in text
    assert "username:  admin" in text
    assert "password:  local-only-admin" in text
    assert "1 min 15 s" in text


def test_summary_says_where_prometheus_answers_with_a_monitoring_host():
    text = "\n".join(output.summary(inventory(monitoring=[EDGE.name]), {}, DEFAULT_PORTS, 5))
    assert "Prometheus:    http://172.30.10.10:9090/" in text
    assert "Alertmanager:  http://172.30.10.10:9093/" in text


def test_summary_has_no_monitoring_lines_without_a_monitoring_host():
    assert "Prometheus" not in "\n".join(output.summary(inventory(), {}, DEFAULT_PORTS, 5))


def test_summary_says_which_login_variable_is_missing():
    text = "\n".join(output.summary(inventory(), {}, DEFAULT_PORTS, 5))
    assert "https://app.morpheus.localhost/" in text
    assert "not set: morpheus_admin_username in inventories/local" in text
    assert "not set: vault_morpheus_admin_password in inventories/local" in text


def test_a_templated_login_says_how_to_see_its_value():
    variables = {"morpheus_admin_username": "{{ vault_admin }}"}
    text = "\n".join(output.summary(inventory(), variables, DEFAULT_PORTS, 5))
    assert "{{ vault_admin }} (a template: `ansible <host> -m debug -a var=" in text
