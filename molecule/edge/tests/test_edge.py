"""The front door end to end with a real ACME server: issuance, serving, renewal, testssl."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

DOMAIN = "morpheus.test"
NAMES = [f"app.{DOMAIN}", f"dashboard.{DOMAIN}", f"api.{DOMAIN}"]
API = f"api.{DOMAIN}"
ROOT = "/tmp/pebble-root.pem"
SCENARIO = Path(__file__).resolve().parent.parent


def journal(host, unit):
    return host.run(f"journalctl -u {unit} --no-pager -n 50").stdout


@pytest.fixture(scope="module")
def pebble_root(host):
    """Pebble's issuing root, from its management API (a new one at every Pebble start)."""
    result = host.run(
        f"curl -sS --fail --cacert /etc/pebble/test-ca.pem -o {ROOT} https://127.0.0.1:15000/roots/0"
    )
    assert result.rc == 0, result.stderr + journal(host, "pebble")
    assert "BEGIN CERTIFICATE" in host.file(ROOT).content_string
    return ROOT


def served_certificate(host, name):
    """Issuer and serial of the certificate nginx serves for a name."""
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {name} < /dev/null 2> /dev/null "
        "| openssl x509 -noout -issuer -serial"
    )
    return result.stdout


@pytest.mark.parametrize("unit", ["nginx", "pebble", "morpheus-test-upstream"])
def test_services_run(host, unit):
    assert host.service(unit).is_running, journal(host, unit)


def test_renewal_timer_is_active(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled, journal(host, "certbot.timer")
    assert timer.is_running, journal(host, "certbot.timer")
    environment = host.run("systemctl show certbot.service -p Environment").stdout
    assert "REQUESTS_CA_BUNDLE=/etc/pebble/test-ca.pem" in environment


@pytest.mark.parametrize("name", NAMES)
def test_pebble_issued_the_served_certificate(host, pebble_root, name):
    assert "Pebble Intermediate CA" in served_certificate(host, name)
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {name} -verify_hostname {name} "
        f"-CAfile {pebble_root} -verify_return_error < /dev/null"
    )
    assert "Verify return code: 0 (ok)" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "path"), [(NAMES[0], "/"), (NAMES[1], "/health"), (API, "/health")]
)
def test_https_answers_200_with_pebble_as_trusted_ca(host, pebble_root, name, path):
    # As the production acceptance test does against Let's Encrypt: curl -I.
    result = host.run(f"curl -sS -I --cacert {pebble_root} https://{name}{path}")
    assert result.rc == 0, result.stderr + journal(host, "nginx")
    assert result.stdout.startswith("HTTP/2 200"), result.stdout


def archive(host):
    return {name: host.run(f"ls /etc/letsencrypt/archive/{name}/").stdout.split() for name in NAMES}


def test_a_valid_certificate_is_not_requested_again(host):
    before = archive(host)
    assert all("cert1.pem" in files for files in before.values()), before
    result = ansible_playbook()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed=0" in result.stdout, result.stdout
    assert archive(host) == before


@pytest.mark.parametrize("name", NAMES)
def test_http_redirects_to_https(host, name):
    result = host.run(
        f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{name}/x"
    )
    assert result.stdout == f"301 https://{name}/x"


@pytest.mark.parametrize("protocol", ["tls1", "tls1_1"])
def test_old_tls_is_refused(host, protocol):
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {API} -{protocol} "
        "-cipher 'DEFAULT:@SECLEVEL=0' < /dev/null"
    )
    assert result.rc != 0
    assert "alert protocol version" in result.stdout + result.stderr


def test_security_headers(host, pebble_root):
    headers = host.run(f"curl -sS -I --cacert {pebble_root} https://{API}/health").stdout.lower()
    for header in (
        "strict-transport-security: max-age=63072000; includesubdomains",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: strict-origin-when-cross-origin",
        "content-security-policy: ",
    ):
        assert header in headers


def test_submissions_past_the_limit_get_429(host, pebble_root):
    codes = host.run(
        "for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} ' --interface 127.0.9.9 "
        f"--cacert {pebble_root} -X POST --data title=x https://{API}/v1/comics; done"
    ).stdout.split()
    assert codes == ["201", "201", "201", "429", "429"], codes


def test_unknown_host_gets_nothing(host):
    plain = host.run("curl -sS --max-time 5 -H 'Host: unknown.example' http://127.0.0.1/")
    assert plain.rc == 52, plain.stderr
    tls = host.run(
        "curl -sS -k --max-time 5 --resolve unknown.example:443:127.0.0.1 https://unknown.example/"
    )
    assert tls.rc == 35, tls.stderr


def test_forced_renewal_is_served_without_a_failed_request(host, pebble_root):
    name = NAMES[0]
    before = served_certificate(host, name)
    log = "/tmp/renewal-client.log"
    stop = "/tmp/renewal-client.stop"
    # A client making requests all along, from before the renewal until after nginx
    # serves the new certificate (it stops when told to, or after 1,200 requests).
    host.run(f"rm -f {log} {stop}; systemctl reset-failed renewal-client || true")
    started = host.run(
        "systemd-run --unit=renewal-client --collect sh -c "
        f"'for i in $(seq 1 1200); do [ -e {stop} ] && break; "
        f'curl -s -o /dev/null -w "%{{http_code}}\\n" --max-time 15 --cacert {pebble_root} '
        f'https://{name}/health >> {log} || echo "curl-exit-$?@$(date -Ins)" >> {log}; '
        "sleep 0.05; done'"
    )
    assert started.rc == 0, started.stderr
    time.sleep(2)
    renewing = host.run("date -Ins").stdout.strip()
    # The renewal as the timer runs it (certbot renew, with the unit's environment),
    # forced, and without the random wait of up to 8 minutes that certbot takes before a
    # renewal run with no terminal (the timer's runs keep it).
    environment = host.run("systemctl show certbot.service -p Environment --value").stdout.strip()
    renewed = host.run(
        f"env {environment} certbot renew --force-renewal --no-random-sleep-on-renew "
        f"--cert-name {name}"
    )
    assert renewed.rc == 0, renewed.stdout + renewed.stderr
    # nginx reloads asynchronously (the hook's `systemctl reload` sends a signal).
    after = served_certificate(host, name)
    for _ in range(30):
        if after != before:
            break
        time.sleep(1)
        after = served_certificate(host, name)
    time.sleep(2)
    assert host.run("systemctl is-active renewal-client").stdout.strip() == "active", (
        "the client stopped before the renewal was served: it proves nothing"
    )
    host.run(f"touch {stop}")
    for _ in range(30):
        if host.run("systemctl is-active renewal-client").stdout.strip() != "active":
            break
        time.sleep(1)
    codes = host.file(log).content_string.split()
    assert len(codes) >= 20, codes
    failed = [code for code in codes if code != "200"]
    # (a curl exit code with its time: 28 timed out, 7 refused, 35 TLS, 56 reset)
    assert not failed, f"{failed} of {len(codes)} requests; the renewal started at {renewing}"
    assert after != before, (before, after)
    assert "Pebble Intermediate CA" in after
    archive = host.run(f"ls /etc/letsencrypt/archive/{name}/").stdout.split()
    assert "cert2.pem" in archive
    hook = host.run("journalctl -t certbot-deploy --no-pager -n 5").stdout
    assert f"installed a new certificate for {name}" in hook


# Findings that describe Pebble's certificates, not this configuration: Pebble's carry
# neither a CRL nor an OCSP URI (Let's Encrypt's carry a CRL URI).
TEST_CA_FINDINGS = {"cert_revocation"}


def test_testssl_reports_no_high_or_critical_finding(host, pebble_root):
    host.run("rm -f /tmp/testssl.json")
    # Protocols, cipher categories, server defaults (certificate), headers, vulnerabilities.
    result = host.run(
        "testssl --quiet --fast --warnings batch --color 0 --protocols --std --server-defaults "
        f"--headers --vulnerable --ip 127.0.0.1 --add-ca {pebble_root} "
        f"--jsonfile-pretty /tmp/testssl.json https://{API}"
    )
    print(result.stdout)  # the summary, kept with the test output
    assert host.file("/tmp/testssl.json").exists, result.stdout + result.stderr
    report = json.loads(host.file("/tmp/testssl.json").content_string)
    findings = [
        finding
        for scan in report["scanResult"]
        for value in scan.values()
        if isinstance(value, list)
        for finding in value
    ]
    ids = {finding["id"] for finding in findings}
    assert {"TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "heartbleed", "HSTS_time"} <= ids, sorted(ids)
    serious = [
        f"{finding['severity']} {finding['id']}: {finding['finding']}"
        for finding in findings
        if finding.get("severity") in ("HIGH", "CRITICAL") and finding["id"] not in TEST_CA_FINDINGS
    ]
    assert serious == [], serious
    assert "Chain of trust               Ok" in result.stdout


def ansible_playbook(*args):
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(SCENARIO / "apply.yml"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            '{"letsencrypt_domains": ["app.morpheus.test", "bad_name!.test"]}',
            "bad_name!.test in letsencrypt_domains is not a valid host name",
        ),
        (
            '{"letsencrypt_acme_directory": "prod"}',
            "letsencrypt_acme_directory is prod: use production, staging or the https:// URL",
        ),
        (
            '{"letsencrypt_acme_directory": "https://127.0.0.1:14000/no-such-directory"}',
            "https://127.0.0.1:14000/no-such-directory (letsencrypt_acme_directory) is not an ACME",
        ),
        ('{"letsencrypt_email": ""}', "letsencrypt_email is missing or not an email address"),
    ],
)
def test_bad_input_stops_in_preflight(host, override, message):
    result = ansible_playbook("--tags", "letsencrypt_preflight", "-e", override)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert message in output, output
