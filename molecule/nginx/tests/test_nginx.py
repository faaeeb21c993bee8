"""The nginx role end to end: TLS, redirects, headers, limits, and a broken config kept out."""

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

DOMAIN = "morpheus.test"
NAMES = [f"app.{DOMAIN}", f"dashboard.{DOMAIN}", f"api.{DOMAIN}"]
API = f"api.{DOMAIN}"
SCENARIO = Path(__file__).resolve().parent.parent


def journal(host, unit="nginx"):
    return host.run(f"journalctl -u {unit} --no-pager -n 50").stdout


def curl(host, name, path="/", *args, scheme="https"):
    """curl inside the instance, the name resolved to the loopback; trusts the name's cert."""
    port = 443 if scheme == "https" else 80
    cacert = f"--cacert /etc/nginx/tls/{name}/fullchain.pem" if scheme == "https" else ""
    extra = " ".join(args)
    return host.run(
        f"curl -sS --max-time 10 --resolve {name}:{port}:127.0.0.1 {cacert} {extra} "
        f"{scheme}://{name}{path}"
    )


def status_of(host, name, path="/", *args, scheme="https"):
    result = curl(host, name, path, "-o /dev/null -w '%{http_code}'", *args, scheme=scheme)
    return result.stdout.strip()


def test_nginx_runs(host):
    service = host.service("nginx")
    assert service.is_running, journal(host)
    assert service.is_enabled, journal(host)


def test_live_configuration_is_valid(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        ("/etc/nginx/nginx.conf", 0o644),
        ("/etc/nginx/morpheus/http.conf", 0o644),
        (f"/etc/nginx/tls/app.{DOMAIN}/privkey.pem", 0o600),
    ],
)
def test_file_modes(host, path, mode):
    assert host.file(path).mode == mode


@pytest.mark.parametrize("name", NAMES)
def test_each_name_answers_over_https_and_http2(host, name):
    result = curl(host, name, "/health", "-o /dev/null -w '%{http_code} %{http_version}'")
    assert result.stdout.strip() == "200 2", result.stderr + journal(host)


@pytest.mark.parametrize("name", NAMES)
def test_http_redirects_to_https(host, name):
    result = curl(
        host,
        name,
        "/some/page?q=1",
        "-o /dev/null -w '%{http_code} %{redirect_url}'",
        scheme="http",
    )
    assert result.stdout.strip() == f"301 https://{name}/some/page?q=1"


def test_acme_challenge_is_served_over_http(host):
    token = "/var/www/acme/.well-known/acme-challenge/test-token"
    host.run(f"echo challenge-answer > {token}")
    try:
        result = curl(host, NAMES[0], "/.well-known/acme-challenge/test-token", scheme="http")
        assert result.stdout.strip() == "challenge-answer"
    finally:
        host.run(f"rm -f {token}")


@pytest.mark.parametrize("protocol", ["tls1", "tls1_1"])
def test_old_tls_is_refused(host, protocol):
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {API} -{protocol} "
        "-cipher 'DEFAULT:@SECLEVEL=0' < /dev/null"
    )
    assert result.rc != 0
    assert "alert protocol version" in result.stderr + result.stdout


@pytest.mark.parametrize(("protocol", "expected"), [("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")])
def test_modern_tls_is_accepted(host, protocol, expected):
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {API} -{protocol} < /dev/null"
    )
    assert f"New, {expected}, Cipher is" in result.stdout, result.stdout + result.stderr


def test_tls12_session_tickets_are_off(host):
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername {API} -tls1_2 < /dev/null"
    )
    assert "Cipher is ECDHE" in result.stdout
    assert "TLS session ticket:" not in result.stdout


PAGE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'",
}
# What the test upstream sends under /app-headers, as the service does (files/test_upstream.py).
APP_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=()",
    "cross-origin-opener-policy": "same-origin-allow-popups",
    "content-security-policy": "default-src 'none'",
}
HSTS = ("strict-transport-security", "max-age=63072000; includeSubDomains")


def response_headers(host, name, path="/", *args):
    """Every header line of the answer, as (lower-case name, value) in order."""
    raw = curl(host, name, path, "-o /dev/null -D -", *args).stdout
    lines = [line.split(":", 1) for line in raw.splitlines()[1:] if ":" in line]
    return [(key.strip().lower(), value.strip()) for key, value in lines]


def each_once(headers, expected):
    """{name: [values]} for the expected names: each should hold one value."""
    return {key: [v for k, v in headers if k == key] for key in expected}


@pytest.mark.parametrize("name", NAMES)
def test_security_headers_once_each_where_the_upstream_sends_none(host, name):
    headers = response_headers(host, name)
    expected = {**PAGE_HEADERS, HSTS[0]: HSTS[1]}
    assert each_once(headers, expected) == {k: [v] for k, v in expected.items()}
    assert ("server", "nginx") in headers  # no version


@pytest.mark.parametrize("name", NAMES)
def test_the_upstreams_page_headers_pass_once_and_hsts_is_nginxs(host, name):
    headers = response_headers(host, name, "/app-headers")
    expected = {**APP_HEADERS, HSTS[0]: HSTS[1]}
    assert each_once(headers, expected) == {k: [v] for k, v in expected.items()}


def test_nginxs_own_error_pages_carry_the_page_headers(host):
    """A 413 (nginx's own answer: the body is over the limit) gets nginx's headers."""
    answer = host.run(
        f"head -c 7340032 /dev/zero | curl -sS --max-time 10 --resolve {API}:443:127.0.0.1 "
        f"--cacert /etc/nginx/tls/{API}/fullchain.pem -o /dev/null -D - "
        f"-X POST --data-binary @- https://{API}/upload"
    ).stdout
    assert answer.startswith("HTTP/2 413"), answer
    lines = [line.split(":", 1) for line in answer.splitlines()[1:] if ":" in line]
    headers = [(k.strip().lower(), v.strip()) for k, v in lines]
    expected = {**PAGE_HEADERS, HSTS[0]: HSTS[1]}
    assert each_once(headers, expected) == {k: [v] for k, v in expected.items()}


def fresh_source():
    """A loopback address of its own, so the limit counts from zero on every run."""
    octets = ".".join(str(random.randint(1, 254)) for _ in range(3))  # noqa: S311 not crypto
    return f"--interface 127.{octets}"


def test_submissions_are_rate_limited(host):
    source = fresh_source()
    codes = [status_of(host, API, "/v1/comics", source, "-X POST --data title=x") for _ in range(6)]
    # rate 2r/m with burst 2: three accepted, then 429.
    assert codes[:3] == ["201", "201", "201"], codes
    assert codes[3:] == ["429", "429", "429"], codes
    # A GET of the same path is not a submission.
    assert status_of(host, API, "/v1/comics") == "200"


def test_storefront_submit_path_is_rate_limited(host):
    source = fresh_source()
    codes = [status_of(host, NAMES[0], "/submit", source, "-X POST --data t=x") for _ in range(5)]
    assert codes == ["200", "200", "200", "429", "429"], codes


def test_unknown_host_gets_nothing_over_http(host):
    result = host.run("curl -sS --max-time 5 -H 'Host: unknown.example' http://127.0.0.1/")
    assert result.rc == 52, result.stderr  # empty reply: 444


def test_unknown_host_gets_no_tls_handshake(host):
    result = host.run(
        "curl -sS -k --max-time 5 --resolve unknown.example:443:127.0.0.1 https://unknown.example/"
    )
    assert result.rc == 35, result.stderr  # handshake rejected
    assert "unrecognized name" in result.stderr


def test_client_address_is_not_taken_from_untrusted_header(host):
    body = curl(host, API, "/echo", "-H 'X-Forwarded-For: 203.0.113.9'").stdout
    assert json.loads(body)["x_forwarded_for"] == "127.0.0.1"


def test_upload_limit(host):
    host.run(
        "head -c 5242880 /dev/zero > /tmp/novel-5m && head -c 7340032 /dev/zero > /tmp/novel-7m"
    )
    assert status_of(host, API, "/upload", "-X POST --data-binary @/tmp/novel-5m") == "200"
    assert status_of(host, API, "/upload", "-X POST --data-binary @/tmp/novel-7m") == "413"


def test_gzip(host):
    headers = curl(host, API, "/big", "-o /dev/null -D - -H 'Accept-Encoding: gzip'").stdout.lower()
    assert "content-encoding: gzip" in headers


def test_comic_pages_carry_cache_headers_and_security_headers(host):
    headers = curl(host, API, "/v1/comics/abc/pages/1", "-o /dev/null -D -").stdout.lower()
    assert "cache-control: private, max-age=86400" in headers
    assert "no-cache" not in headers
    assert "strict-transport-security" in headers


def test_stub_status_on_loopback(host):
    result = host.run("curl -sS http://127.0.0.1:8080/stub_status")
    assert "Active connections:" in result.stdout
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening


def test_access_log_is_json_with_times(host):
    curl(host, API, "/health")
    line = host.run("tail -n 1 /var/log/nginx/api.access.log").stdout
    entry = json.loads(line)
    assert entry["host"] == API
    assert float(entry["request_time"]) >= 0
    assert entry["upstream_response_time"] not in ("", "-")
    assert entry["upstream_addr"] == "127.0.0.1:8000"


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("?page=2&api_key=test-only-leaked-key", "/health?[redacted]"),
        ("?token=test-only-leaked-key", "/health?[redacted]"),
        ("?Password=test-only-leaked-key&page=2", "/health?[redacted]"),
        ("?page=2&monkey=3", "/health?page=2&monkey=3"),
    ],
)
def test_a_credential_in_a_query_string_is_not_logged(host, query, logged):
    curl(host, API, f"'/health{query}'")
    line = host.run("tail -n 1 /var/log/nginx/api.access.log").stdout
    assert json.loads(line)["uri"] == logged, line
    assert "test-only-leaked-key" not in host.run("cat /var/log/nginx/*.log").stdout


def test_logs_are_not_world_readable(host):
    logs = host.run("find /var/log/nginx -name '*.log'").stdout.split()
    assert "/var/log/nginx/api.access.log" in logs
    for path in logs:
        assert host.file(path).mode == 0o640, path
    rotated = host.file("/etc/logrotate.d/nginx").content_string
    assert "create 0640 www-data adm" in rotated


def test_upstream_pool_comes_from_the_inventory_group(host):
    conf = host.file("/etc/nginx/morpheus/http.conf").content_string
    assert "include morpheus/upstreams/live/*.conf;" in conf
    assert "keepalive 32;" in conf
    # A host without slots has one, main, linked as the one it serves from.
    live = host.file("/etc/nginx/morpheus/upstreams/live/morpheus-nginx.conf")
    assert (
        live.is_symlink
        and live.linked_to == "/etc/nginx/morpheus/upstreams/morpheus-nginx.main.conf"
    )
    assert "server 127.0.0.1:8000 weight=1 max_fails=3 fail_timeout=10s;" in live.content_string


def test_maintenance_flag_file_answers_503_with_the_page(host):
    host.run("touch /etc/nginx/maintenance.on")
    try:
        result = curl(host, NAMES[0], "/", "-D -")
        assert "HTTP/2 503" in result.stdout
        assert "Down for maintenance" in result.stdout
        assert "strict-transport-security" in result.stdout.lower()
    finally:
        host.run("rm -f /etc/nginx/maintenance.on")
    assert status_of(host, NAMES[0], "/") == "200"


def ansible_playbook(playbook, *args):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return subprocess.run(
        ["ansible-playbook", "-i", inventory, str(SCENARIO / playbook), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_broken_config_never_goes_live(host):
    live_before = host.file("/etc/nginx/morpheus/extra.conf").sha256sum
    pid_before = host.file("/run/nginx.pid").content_string
    result = ansible_playbook(
        "broken.yml", "-e", "nginx_extra_config='this_is_not_a_directive on;'"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'unknown directive "this_is_not_a_directive"' in output, output
    assert "Check the candidate configuration with nginx -t" in output
    # The live tree and the running master are untouched, and it still answers.
    assert host.file("/etc/nginx/morpheus/extra.conf").sha256sum == live_before
    assert host.file("/run/nginx.pid").content_string == pid_before
    assert host.run("nginx -t").rc == 0
    assert status_of(host, API, "/health") == "200"


MONITOR = f"monitor.{DOMAIN}"
WATCHER = "watcher:test-only-monitor-password"  # test-only value (vars/main.yml)


def test_the_monitoring_site_asks_for_nginx_s_login_first(host):
    answer = curl(host, MONITOR, "/", "-D - -o /dev/null")
    assert answer.stdout.startswith("HTTP/2 401"), answer.stdout + answer.stderr
    assert 'www-authenticate: basic realm="morpheus monitoring"' in answer.stdout.lower()
    assert status_of(host, MONITOR, "/", "-u watcher:wrong") == "401"


def test_the_monitoring_site_passes_a_known_user_to_grafana_without_the_credentials(host):
    answer = curl(host, MONITOR, "/d/morpheus-overview", f"-u {WATCHER}")
    assert answer.rc == 0, answer.stderr
    seen = json.loads(answer.stdout)
    assert seen["path"] == "/d/morpheus-overview"
    assert seen["x_forwarded_proto"] == "https"
    # Grafana would take nginx's credentials for a login of its own.
    assert seen["authorization"] is None


def test_the_monitoring_site_has_nginx_s_hsts_and_leaves_page_headers_to_grafana(host):
    headers = response_headers(host, MONITOR, "/", f"-u {WATCHER}")
    assert each_once(headers, {HSTS[0]: HSTS[1]}) == {HSTS[0]: [HSTS[1]]}
    assert "content-security-policy" not in {k for k, _ in headers}


def test_the_monitoring_site_redirects_http_to_https(host):
    answer = curl(
        host, MONITOR, "/", "-o /dev/null -w '%{http_code} %{redirect_url}'", scheme="http"
    )
    assert answer.stdout.strip() == f"301 https://{MONITOR}/"


def test_the_monitoring_password_file_holds_hashes_only(host):
    passwords = host.file("/etc/nginx/morpheus/monitor.htpasswd")
    assert (passwords.user, passwords.group, passwords.mode) == ("root", "www-data", 0o640)
    content = passwords.content_string
    assert "test-only-monitor-password" not in content
    assert [line.split(":", 1)[1][:3] for line in content.splitlines() if ":" in line] == ["$6$"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nginx_domain=morpheus_test!", "is not a valid host name"),
        ("nginx_monitor_upstream=grafana", "needs nginx_monitor_upstream as"),
    ],
)
def test_bad_input_stops_in_preflight(host, override, message):
    result = ansible_playbook("broken.yml", "-e", override, "--tags", "nginx_preflight")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
