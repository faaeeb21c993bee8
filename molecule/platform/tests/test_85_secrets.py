"""No configured secret in the platform's logs: after the converge, the smoke tests,
the drills and the rolling updates, neither the journal, nor any container's log,
nor nginx's logs, nor a running process's command line holds one of the vault's
values, and nginx's logs are not world-readable."""

import pytest
import yaml
from conftest import PROJECT

SETTINGS = PROJECT / "inventories" / "local" / "group_vars" / "all" / "main.yml"
LIST = "/root/configured-secrets"


def configured_secrets() -> list[str]:
    """The vault's values of the local default (test-only values)."""
    values = yaml.safe_load(SETTINGS.read_text())
    secrets = [str(v) for k, v in values.items() if k.startswith("vault_") and v]
    assert len(secrets) >= 5, f"no vault_* values in {SETTINGS}"
    return secrets


def found_in(host, source: str) -> str:
    """The lines of `source`'s output that hold a configured secret."""
    return host.run(f"{source} | grep -F -f {LIST} | head -n 20").stdout


@pytest.fixture(scope="module")
def secret_list(host):
    """The configured secrets, one a line, in a file on the host for grep -f."""
    host.run(f"cat > {LIST} <<'EOF'\n" + "\n".join(configured_secrets()) + "\nEOF")
    yield LIST
    host.run(f"rm -f {LIST}")


def test_no_configured_secret_is_in_a_log(host, secret_list):
    journal = found_in(host, "journalctl --no-pager -o cat")
    containers = found_in(host, "for c in $(docker ps -aq); do docker logs $c 2>&1; done")
    nginx = found_in(host, "cat /var/log/nginx/*.log")
    assert journal == "", journal
    assert containers == "", containers
    assert nginx == "", nginx


def test_no_configured_secret_is_on_a_command_line(host, secret_list):
    # The exporters among them: their logins come from files, never from arguments.
    exporters = host.run("pgrep -c -f prometheus-").stdout.strip()
    assert int(exporters or 0) >= 5, "the exporters should be running"
    processes = found_in(host, "ps -eo args --no-headers")
    assert processes == "", processes


def test_nginx_logs_are_not_world_readable(host):
    logs = host.run("find /var/log/nginx -name '*.log'").stdout.split()
    assert logs
    assert {path: host.file(path).mode for path in logs} == dict.fromkeys(logs, 0o640)
