"""The pgbouncer role: SCRAM logins through a transaction pooler, checked reloads."""

import json

import pytest
from conftest import ansible_playbook, scenario_file

APP_PASSWORD = "test-only-app-password"  # test-only value
ADMIN_PASSWORD = "test-only-admin-password"  # test-only value
EXPORTER_PASSWORD = "test-only-exporter-password"  # test-only value
PGB_TAGS = "pgbouncer_preflight,pgbouncer_configure,pgbouncer_run"


def _journal(host):
    return host.run("journalctl -u pgbouncer --no-pager -n 50").stdout


def _address(host):
    return host.run("hostname -I").stdout.split()[0]


def _psql(host, user, password, db, sql, address=None):
    address = address or _address(host)
    return host.run(
        f"PGPASSWORD={password} psql -X -At -h {address} -p 6432 -U {user} -d {db} "
        f"-c {json.dumps(sql)}"
    )


def _main_pid(host):
    return host.run("systemctl show -p MainPID --value pgbouncer").stdout.strip()


def _playbook(tags, extra_vars, playbook="converge.yml"):
    return ansible_playbook(scenario_file(playbook), extra_vars, tags=tags, timeout=300)


def test_service_runs(host):
    service = host.service("pgbouncer")
    assert service.is_running, _journal(host)
    assert service.is_enabled, _journal(host)


def test_listens_on_loopback_and_private_address_only(host):
    assert host.socket("tcp://127.0.0.1:6432").is_listening
    assert host.socket(f"tcp://{_address(host)}:6432").is_listening
    assert not host.socket("tcp://0.0.0.0:6432").is_listening


def test_auth_file_holds_scram_secrets_only(host):
    userlist = host.file("/etc/pgbouncer/userlist.txt")
    assert userlist.user == "postgres"
    assert userlist.mode == 0o640
    assert userlist.contains('^"app" "SCRAM-SHA-256\\$4096:')
    assert not userlist.contains("test-only")


def test_auth_file_secret_equals_the_servers(host):
    # Same seed, same salt: PgBouncer can log in to PostgreSQL with the client's keys.
    stored = host.run(
        "runuser -u postgres -- psql -X -At -c "
        "\"SELECT rolpassword FROM pg_authid WHERE rolname = 'app'\""
    ).stdout.strip()
    assert host.file("/etc/pgbouncer/userlist.txt").contains(stored.replace("$", "\\$"))


def test_client_runs_a_transaction_through_pgbouncer_with_its_password(host):
    result = _psql(
        host,
        "app",
        APP_PASSWORD,
        "morpheus",
        "BEGIN; CREATE TEMP TABLE t (x int) ON COMMIT DROP; INSERT INTO t VALUES (1), (2);"
        " SELECT current_user || ':' || sum(x) FROM t; COMMIT;",
    )
    assert result.rc == 0, result.stderr + _journal(host)
    assert "app:3" in result.stdout.split()


def test_wrong_password_is_refused(host):
    result = _psql(host, "app", "not-the-password", "morpheus", "SELECT 1")
    assert result.rc != 0
    assert "SASL authentication failed" in result.stderr


def test_admin_sees_transaction_pools(host):
    _psql(host, "app", APP_PASSWORD, "morpheus", "SELECT 1")
    result = _psql(host, "pgbouncer_admin", ADMIN_PASSWORD, "pgbouncer", "SHOW POOLS")
    assert result.rc == 0, result.stderr
    pools = [line.split("|") for line in result.stdout.splitlines()]
    assert any(p[0] == "morpheus" and p[1] == "app" and p[-1] == "transaction" for p in pools)


def test_stats_user_reads_but_cannot_administer(host):
    stats = _psql(host, "pgbouncer_exporter", EXPORTER_PASSWORD, "pgbouncer", "SHOW STATS")
    assert stats.rc == 0, stats.stderr
    pause = _psql(host, "pgbouncer_exporter", EXPORTER_PASSWORD, "pgbouncer", "PAUSE")
    assert pause.rc != 0
    assert "admin access needed" in pause.stderr


def test_config_change_is_a_reload_not_a_restart(host):
    pid = _main_pid(host)
    rc, output = _playbook(PGB_TAGS, {"pgbouncer_max_client_conn": 321})
    assert rc == 0, output[-3000:]
    assert _main_pid(host) == pid, _journal(host)
    config = _psql(host, "pgbouncer_admin", ADMIN_PASSWORD, "pgbouncer", "SHOW CONFIG")
    assert "max_client_conn|321|" in config.stdout


def test_config_pgbouncer_refuses_is_never_installed(host):
    before = host.file("/etc/pgbouncer/pgbouncer.ini").sha256sum
    pid = _main_pid(host)
    rc, output = _playbook(PGB_TAGS, {"pgbouncer_extra_config": {"server_lifetime": "forever"}})
    assert rc != 0
    assert 'invalid value "forever" for parameter server_lifetime' in output, output[-3000:]
    assert host.file("/etc/pgbouncer/pgbouncer.ini").sha256sum == before
    assert _main_pid(host) == pid


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"pgbouncer_pool_mode": "bogus"},
            "value of pgbouncer_pool_mode must be one of: transaction, session, statement, "
            "got: bogus",
        ),
        (
            {"pgbouncer_users": [{"name": "nopass"}]},
            "pgbouncer_users: no password for nopass; set each user's password (from the vault).",
        ),
        (
            {"pgbouncer_default_pool_size": 30},
            "pgbouncer_backend_connection_budget=20 (the server connections PostgreSQL keeps",
        ),
    ],
)
def test_bad_input_stops_in_preflight(host, extra_vars, message):
    before = host.file("/etc/pgbouncer/pgbouncer.ini").sha256sum
    rc, output = _playbook("pgbouncer_preflight", extra_vars)
    assert rc != 0
    assert message in output, output[-3000:]
    assert host.file("/etc/pgbouncer/pgbouncer.ini").sha256sum == before


def test_a_restarted_postgresql_is_reached_again_within_the_login_retry(host):
    """A client that arrives while PostgreSQL is down makes PgBouncer's login fail, which
    starts its server_login_retry timer. Once PostgreSQL is back, clients must get
    through within a couple of seconds, not the 15 that PgBouncer's default leaves
    (measured on a 2-second outage: 10.8 s with the default, 0.05 s with 1)."""
    psql = (
        f"PGPASSWORD={APP_PASSWORD} PGCONNECT_TIMEOUT=3 psql -X -At -h 127.0.0.1 -p 6432 "
        "-U app -d morpheus -c 'SELECT 1' >/dev/null 2>&1"
    )
    assert host.run(psql).rc == 0, _journal(host)
    # On the instance, so that the test's own round trips do not count. Clients keep
    # arriving during a 2-second outage, as a web tier's would.
    drill = host.run(
        "systemctl stop postgresql && "
        "while pg_isready -q -h 127.0.0.1 -p 5432; do sleep 0.05; done && "
        f"for i in 1 2 3 4; do ( {psql} & ); sleep 0.5; done && "
        "systemctl start postgresql && "
        "until pg_isready -q -h 127.0.0.1 -p 5432; do sleep 0.05; done && "
        "back=$(date +%s%N) && "
        f"until {psql}; do sleep 0.05; done && "
        "echo $(( ($(date +%s%N) - back) / 1000000 ))"
    )
    assert drill.rc == 0, drill.stderr + _journal(host)
    waited = int(drill.stdout.strip()) / 1000
    assert waited < 3, f"PgBouncer took {waited:.1f}s to reach a restarted PostgreSQL"
