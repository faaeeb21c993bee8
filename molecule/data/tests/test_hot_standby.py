"""A hot standby streaming from the primary: how soon a committed row is readable there,
the read-only PgBouncer database that serves from it, and what it refuses."""

import os
import shlex
import time

import testinfra
from conftest import PROJECT, ansible_playbook
from figures import say

testinfra_hosts = ["morpheus-data"]

APP_PASSWORD = "test-only-app-password"  # test-only value
PRIMARY, STANDBY = "172.30.22.11", "172.30.22.12"


def _host(name):
    return testinfra.get_host(
        f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}"
    )


def _psql(host, sql, database="morpheus"):
    result = host.run(
        f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {database} -c {shlex.quote(sql)}"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def _app(host, sql, database, address=PRIMARY):
    """As the service: through a host's PgBouncer, with SCRAM."""
    return host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -XAtq -v ON_ERROR_STOP=1 -h {address} -p 6432 "
        f"-U morpheus -d {database} -c {shlex.quote(sql)}"
    )


def test_the_standby_streams_through_its_slot(host):
    standby = _host("morpheus-data-2")
    assert _psql(standby, "SELECT pg_is_in_recovery()") == "t"
    assert _psql(standby, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    replication = _psql(
        host,
        "SELECT r.application_name, r.state, s.slot_name, s.active FROM pg_stat_replication r"
        " JOIN pg_replication_slots s ON s.active_pid = r.pid",
    )
    assert replication == "morpheus_data_2|streaming|morpheus_data_2|t", replication


POLL = f"""
insert="INSERT INTO standby_drill (marker) VALUES ('$1')"
PGPASSWORD=$2 psql -XAtq -v ON_ERROR_STOP=1 -h {PRIMARY} -p 6432 -U morpheus -d morpheus \\
    -c "$insert" || exit 2
committed=$(date +%s%N)
query="SELECT 1 FROM standby_drill WHERE marker = '$1'"
for i in $(seq 1 1000); do
    if [ "$(runuser -u postgres -- psql -XAtqd morpheus -c "$query")" = 1 ]; then
        echo $(( ($(date +%s%N) - committed) / 1000000 )); exit 0
    fi
    sleep 0.005
done
exit 1
"""


def test_a_committed_row_is_readable_on_the_standby_soon_after(host):
    standby = _host("morpheus-data-2")
    created = _app(
        host,
        "CREATE TABLE IF NOT EXISTS standby_drill"
        " (marker text PRIMARY KEY, at timestamptz DEFAULT now())",
        "morpheus",
    )
    assert created.rc == 0, created.stderr
    delays = []
    for attempt in range(5):
        marker = f"row-{time.time_ns()}-{attempt}"
        # Written through the primary's PgBouncer from the standby host, then polled
        # there: the figure is from the commit's return to the row's visibility.
        poll = standby.run(f"bash -s -- {marker} {APP_PASSWORD} <<'EOF'\n{POLL}\nEOF")
        assert poll.rc == 0, f"{marker}: exit {poll.rc} {poll.stderr}"
        delays.append(int(poll.stdout))
    say(f"standby: a committed row readable after {sorted(delays)} ms (polled every 5 ms)")
    assert max(delays) < 5000


def test_the_read_only_database_serves_from_the_standby_and_refuses_writes(host):
    # From the primary's PgBouncer and from the standby's: morpheus_ro is the standby.
    for address in (PRIMARY, STANDBY):
        served = _app(
            host, "SELECT pg_is_in_recovery(), inet_server_port()", "morpheus_ro", address
        )
        assert served.rc == 0, served.stderr
        assert served.stdout.strip().startswith("t|"), served.stdout
        write = _app(
            host, "INSERT INTO standby_drill (marker) VALUES ('nope')", "morpheus_ro", address
        )
        assert write.rc != 0
        assert "read-only transaction" in write.stderr, write.stderr
    # And morpheus is the primary, from either PgBouncer.
    for address in (PRIMARY, STANDBY):
        served = _app(host, "SELECT pg_is_in_recovery()", "morpheus", address)
        assert served.stdout.strip() == "f", served.stdout + served.stderr


def test_backups_run_on_the_primary_only(host):
    standby = _host("morpheus-data-2")
    before = _psql(host, "SELECT 1")  # the primary answers
    assert before == "1"
    run = standby.run("systemctl start pgbackrest-backup@diff.service")
    assert run.rc == 0, run.stderr
    journal = standby.run("journalctl -u pgbackrest-backup@diff --no-pager -n 20").stdout
    assert "condition" in journal.lower(), journal
    assert "backup command begin" not in journal, journal


def test_a_standby_without_a_replication_password_is_refused():
    rc, output = ansible_playbook(
        PROJECT / "molecule" / "data" / "converge.yml",
        {"postgresql_replication_password": ""},
        tags="postgresql_preflight",
        options=["--limit", "morpheus-data-2"],
    )
    assert rc != 0
    assert "morpheus-data-2 is a standby of morpheus-data: it needs" in output, output[-3000:]
    assert "postgresql_replication_password" in output
