"""The smoke test through the edge: a comic made end to end, nothing left behind."""

from site_checks import playbook, sql


def test_smoke_test_passes_and_leaves_nothing_behind(host):
    comics_before = sql(host, "SELECT count(*) FROM comics")
    code, output = playbook("smoke.yml")
    assert code == 0, output[-3000:]
    assert "Smoke test passed through morpheus-platform" in output
    assert sql(host, "SELECT count(*) FROM comics") == comics_before
    assert sql(host, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL") == "0"
