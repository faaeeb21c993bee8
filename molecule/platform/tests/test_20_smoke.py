"""The smoke test through the edge: a comic made end to end, nothing left behind."""

import pytest
from site_checks import NAMES, ROOT_CA, playbook, sql


def test_smoke_test_passes_and_leaves_nothing_behind(host):
    comics_before = sql(host, "SELECT count(*) FROM comics")
    code, output = playbook("smoke.yml")
    assert code == 0, output[-3000:]
    assert "Smoke test passed through morpheus-platform" in output
    assert sql(host, "SELECT count(*) FROM comics") == comics_before
    assert sql(host, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == "0"


SECURITY_HEADERS = (
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
)


@pytest.mark.parametrize(
    ("name", "path"), [(NAMES[0], "/"), (NAMES[1], "/login"), (NAMES[2], "/health")]
)
def test_each_security_header_once_through_the_edge(host, name, path):
    """One owner each: nginx's HSTS with its configured value, the service's page headers
    (its CSP names script-src; nginx's does not) passed once."""
    raw = host.run(
        f"curl -sS -o /dev/null -D - --cacert {ROOT_CA} --resolve {name}:443:127.0.0.1 "
        f"https://{name}{path}"
    ).stdout
    lines = [line.split(":", 1) for line in raw.splitlines()[1:] if ":" in line]
    headers = [(key.strip().lower(), value.strip()) for key, value in lines]
    seen = {key: [v for k, v in headers if k == key] for key in SECURITY_HEADERS}
    assert all(len(values) == 1 for values in seen.values()), seen
    assert seen["strict-transport-security"] == ["max-age=63072000; includeSubDomains"]
    assert "script-src 'self'" in seen["content-security-policy"][0]
