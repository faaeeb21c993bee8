"""A hot standby streaming from the primary: how soon a committed row is readable there,
the read-only PgBouncer database that serves from it, and what it refuses."""

import shlex
import time

import pytest
from conftest import PROJECT, ansible_playbook, instance
from figures import say
from pg import APP_PASSWORD, psql
from promql import query, value, wait_for

pytestmark = pytest.mark.drill

testinfra_hosts = ["morpheus-data"]

PRIMARY, STANDBY = "172.30.22.11", "172.30.22.12"


def _app(host, sql, database, address=PRIMARY):
    """As the service: through a host's PgBouncer, with SCRAM."""
    return host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -XAtq -v ON_ERROR_STOP=1 -h {address} -p 6432 "
        f"-U morpheus -d {database} -c {shlex.quote(sql)}"
    )


def test_the_standby_streams_through_its_slot(host):
    standby = instance("morpheus-data-2")
    assert psql(standby, "SELECT pg_is_in_recovery()") == "t"
    assert psql(standby, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    replication = psql(
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
    standby = instance("morpheus-data-2")
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
    standby = instance("morpheus-data-2")
    before = psql(host, "SELECT 1")  # the primary answers
    assert before == "1"
    run = standby.run("systemctl start pgbackrest-backup@diff.service")
    assert run.rc == 0, run.stderr
    journal = standby.run("journalctl -u pgbackrest-backup@diff --no-pager -n 20").stdout
    assert "condition" in journal.lower(), journal
    assert "backup command begin" not in journal, journal


def test_prometheus_sees_the_primary_its_streaming_standby_and_no_replication_alert(host):
    """The series the replication rules read exist, with the values of a healthy pair, and
    no replication alert is pending (roles/prometheus's replication.rules.yml)."""
    wait_for('pg_standby_in_recovery{host="morpheus-data-2"} == 1', 60, "the standby's series")
    assert value('pg_standby_in_recovery{host="morpheus-data"}') == 0
    assert value('pg_standby_streaming{host="morpheus-data-2"}') == 1
    assert value('pg_standby_replay_lag_seconds{host="morpheus-data-2"}') is not None
    assert value('pg_standby_replay_lag_bytes{host="morpheus-data-2"}') is not None
    assert (
        value('pg_replication_slots_active{host="morpheus-data",slot_name="morpheus_data_2"}') == 1
    )
    assert value('pg_archiver_failing{host="morpheus-data"}') == 0
    for name in ("morpheus-data", "morpheus-data-2"):
        assert value(f'morpheus_postgres_fenced{{host="{name}"}}') == 0
    assert value('morpheus_postgres_primaries_seen{host="morpheus-data"}') == 1
    firing = query('ALERTS{alertname=~"Postgresql.*"}')
    assert not firing, firing
    # Prometheus scrapes what the inventory names, never the package's default targets.
    assert not query('up{host=""}'), query('up{host=""}')


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
