"""PostgreSQL as the data drills use it: SQL as the postgres superuser on an instance,
and playbooks/failover.yml timed."""

import shlex
import time

from conftest import PROJECT, ansible_playbook

UNIT = "postgresql@15-main"
# The service's login through PgBouncer (molecule.yml's __test_app_password).
APP_PASSWORD = "test-only-app-password"  # test-only value


def psql(host, sql: str, database: str = "morpheus") -> str:
    """Run `sql` on the host's PostgreSQL (local socket, as postgres); its output."""
    result = host.run(
        f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(sql)}"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def failover(extra_vars: dict, primary: str | None = None) -> tuple[int, str, float]:
    """playbooks/failover.yml, confirmed: its exit code, its output and its seconds.
    `primary`: the primary the inventory names, when not the scenario's first host."""
    started = time.monotonic()
    rc, output = ansible_playbook(
        PROJECT / "playbooks" / "failover.yml",
        {"failover_confirm": "yes", **extra_vars},
        inventory_vars={"morpheus_postgres_primary": primary} if primary else None,
    )
    return rc, output, time.monotonic() - started
