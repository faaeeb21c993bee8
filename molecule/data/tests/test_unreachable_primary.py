"""A primary that is lost (its host frozen: neither Ansible nor PostgreSQL's clients get
an answer) under writes: failover.yml refuses to leave it unfenced until told it is
lost, then promotes the standby; writes go on through the surviving PgBouncer, without
a new connection string; when the lost host comes back, still running as a primary, its
guard fences it; started by hand, it refuses to start; then it rejoins.

Runs after the planned failover, which left morpheus-data-2 the primary and
morpheus-data its standby, and leaves them as the scenario began: morpheus-data the
primary, morpheus-data-2 its standby.
"""

import re
import shlex
import subprocess
import time

import pytest
from conftest import instance
from figures import say
from pg import APP_PASSWORD, UNIT, failover, psql
from promql import alert, value, wait_for

pytestmark = pytest.mark.drill

testinfra_hosts = ["morpheus-data"]

LOST, SURVIVOR = "morpheus-data-2", "morpheus-data"
WRITER_LOG = "/var/tmp/lost-primary-writer.log"
# The service's connection string lists every host's PgBouncer, the primary's first: a
# host that does not answer costs connect_timeout, then libpq tries the next. A write
# gives up after 3 s, as a request would (a frozen server never answers one in flight).
WRITE = (
    f"PGPASSWORD={APP_PASSWORD} PGCONNECT_TIMEOUT=2 timeout 3 psql -XAtq "
    "-h 172.30.22.12,172.30.22.11 -p 6432 -U morpheus -d morpheus -c "
    + shlex.quote(
        "INSERT INTO lost_primary_drill DEFAULT VALUES RETURNING id, extract(epoch FROM at)"
    )
)


def _docker(*args):
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=60)


def test_a_failover_from_a_primary_that_cannot_be_reached_needs_to_be_told_it_is_lost(host):
    assert psql(instance(LOST), "SELECT pg_is_in_recovery()") == "f"
    _docker("pause", LOST)
    try:
        rc, output, _ = failover({}, primary=LOST)
    finally:
        _docker("unpause", LOST)
    assert rc != 0
    assert f"Nothing was changed: {LOST}, the primary, cannot be reached" in output, output[-3000:]
    assert "-e failover_primary_lost=yes" in output
    assert psql(host, "SELECT pg_is_in_recovery()") == "t"
    assert psql(instance(LOST), "SELECT pg_is_in_recovery()") == "f"


def test_a_lost_primary_fails_over_under_writes_and_its_guard_fences_it_when_it_returns(host):
    lost = instance(LOST)
    psql(lost, "DROP TABLE IF EXISTS lost_primary_drill")
    psql(
        lost,
        "CREATE TABLE lost_primary_drill (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())",
    )
    psql(lost, "GRANT ALL ON lost_primary_drill, lost_primary_drill_id_seq TO morpheus")
    # One line per write: a libpq notice from a host it gave up on may precede the row.
    loop = (
        f'while :; do out=$({WRITE} 2>&1) && echo "ok $(echo $out)" || echo "error $(echo $out)"; '
        f"sleep 0.05; done >> {WRITER_LOG}"
    )
    host.run(f"rm -f {WRITER_LOG}")
    host.run(f"systemd-run --unit=lost-writer /bin/bash -c {shlex.quote(loop)}")
    try:
        time.sleep(5)
        paused_at = float(host.run("date +%s.%N").stdout)
        _docker("pause", LOST)
        try:
            rc, output, seconds = failover({"failover_primary_lost": "yes"}, primary=LOST)
            assert rc == 0, output[-4000:]
            assert f"{LOST} is fenced by its guard if it comes back" in output, output[-3000:]
            time.sleep(5)
        finally:
            unpaused = time.monotonic()
            _docker("unpause", LOST)
            unpaused_at = float(host.run("date +%s.%N").stdout)
        # The lost host runs on as a primary, on the old timeline; its guard stops it.
        for _ in range(120):
            if lost.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "masked":
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the guard did not fence the returning primary")
        fenced_after = time.monotonic() - unpaused
        # Writes go on through the surviving PgBouncer once the fenced host refuses them.
        fenced_at = float(host.run("date +%s.%N").stdout)
        landed = f"SELECT count(*) FROM lost_primary_drill WHERE at > to_timestamp({fenced_at})"
        for _ in range(30):
            if psql(host, landed) != "0":
                break
            time.sleep(1)
    finally:
        host.run("systemctl stop lost-writer.service; systemctl reset-failed lost-writer")

    assert psql(host, "SELECT pg_is_in_recovery()") == "f"
    assert lost.run(f"systemctl is-active {UNIT}").stdout.strip() != "active"
    assert lost.run("systemctl is-active pgbouncer").stdout.strip() != "active"
    note = lost.file("/var/lib/postgresql/FENCED").content_string
    assert "Fenced by morpheus-pg-guard" in note and "172.30.22.11" in note, note
    assert "fencing" in lost.run("journalctl -t morpheus-pg-guard --no-pager -n 20").stdout

    # Every row a client saw committed, as (id, commit time); and those on the survivor.
    lines = host.run(f"cat {WRITER_LOG}").stdout.splitlines()
    acknowledged = [
        (match[1], match[2])
        for line in lines
        if line.startswith("ok ") and (match := re.search(r"(\d+)\|([0-9.]+)\s*$", line))
    ]
    kept = {
        tuple(row.split("|"))
        for row in psql(
            host, "SELECT id, extract(epoch FROM at) FROM lost_primary_drill"
        ).splitlines()
    }
    lost_rows = [float(at) for row_id, at in acknowledged if (row_id, at) not in kept]
    # Replication is asynchronous: what the primary acknowledged in the instant before it
    # froze may not have reached the standby; everything older must have. After it comes
    # back, it takes writes until its guard fences it.
    missing_older = [at for at in lost_rows if at < paused_at - 1]
    lost_last_second = [at for at in lost_rows if paused_at - 1 <= at < unpaused_at]
    split_writes = [at for at in lost_rows if at >= unpaused_at]
    # While the lost host was frozen, writes went on through the surviving PgBouncer (a
    # row begun over half a second after the freeze can only be the new primary's).
    resumed = psql(
        host,
        "SELECT count(*), coalesce(min(extract(epoch FROM at)), 0) FROM lost_primary_drill"
        f" WHERE at BETWEEN to_timestamp({paused_at + 0.5}) AND to_timestamp({unpaused_at})",
    ).split("|")
    errors = [line for line in lines if line.startswith("error")]
    promoted_after = float(re.search(r"is the primary, promoted ([0-9.]+) s after", output)[1])
    say(
        f"lost primary: failover.yml {seconds:.0f} s, promoted {promoted_after:.1f} s after it "
        f"began; {len(acknowledged)} rows acknowledged: {len(missing_older)} older than 1 s "
        f"before the freeze missing, {len(lost_last_second)} of its last second lost; "
        f"writes went on through the surviving PgBouncer {float(resumed[1]) - paused_at:.1f} s "
        f"after the freeze ({resumed[0]} before the host came back), {len(errors)} writes "
        f"refused meanwhile; the returning primary fenced by its guard "
        f"{fenced_after:.1f} s after it came back, having taken {len(split_writes)} writes"
    )
    assert not missing_older, missing_older[:20]
    assert int(resumed[0]) > 0, "no write reached the new primary while the old one was lost"


def test_the_fenced_host_refuses_to_start_as_a_primary_even_by_hand(host):
    lost = instance(LOST)
    lost.run("rm -f /var/lib/postgresql/FENCED")
    assert lost.run(f"systemctl unmask {UNIT}").rc == 0
    started = lost.run(f"systemctl start {UNIT}")
    assert started.rc != 0
    assert lost.run(f"systemctl is-active {UNIT}").stdout.strip() != "active"
    assert (
        "refusing to start PostgreSQL as a primary"
        in lost.run("journalctl -t morpheus-pg-guard --no-pager -n 5").stdout
    )
    assert lost.file("/var/lib/postgresql/FENCED").exists
    assert psql(host, "SELECT pg_is_in_recovery()") == "f"
    wait_for(f'morpheus_postgres_fenced{{host="{LOST}"}} == 1', 60, "the fence's metric")
    wait_for(alert("PostgresqlFenced", LOST), 30, "the fence's alert")


def test_the_lost_primary_rejoins_as_a_standby(host):
    lost = instance(LOST)
    rc, output, seconds = failover({"rejoin": LOST})
    assert rc == 0, output[-4000:]
    assert psql(lost, "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)") == (
        "t|streaming"
    )
    assert lost.run("test -e /var/lib/postgresql/FENCED").rc != 0
    assert lost.run("systemctl is-active pgbouncer").stdout.strip() == "active"
    wait_for(f'morpheus_postgres_fenced{{host="{LOST}"}} == 0', 60, "the fence's metric")
    wait_for(f'pg_standby_streaming{{host="{LOST}"}} == 1', 60, "the standby's series")
    assert value(f'pg_standby_in_recovery{{host="{SURVIVOR}"}}') == 0
    say(f"lost primary: {LOST} rejoined as a standby in {seconds:.0f} s")
