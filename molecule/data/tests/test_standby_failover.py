"""Failover to the hot standby through playbooks/failover.yml, under writes through
PgBouncer: no committed row lost, the old primary fenced, then rejoined as a standby.

Runs after the point-in-time drills, which left the standby on a timeline the primary no
longer has: the first rejoin rebuilds it, as the runbook says. Every test takes the
`host` fixture, so that pytest keeps them in this order (it runs the tests of a
parametrized fixture together, before the others).
"""

import re
import shlex
import time

import pytest
from conftest import PROJECT, ansible_playbook, instance
from figures import say
from pg import APP_PASSWORD, UNIT, failover, psql

pytestmark = pytest.mark.drill

testinfra_hosts = ["morpheus-data"]

PRIMARY, STANDBY = "172.30.22.11", "172.30.22.12"
WRITER_LOG = "/var/tmp/failover-writer.log"
# The service's connection: PgBouncer on the first host, as the service's settings name it.
WRITE = (
    f"PGPASSWORD={APP_PASSWORD} psql -XAtq -h {PRIMARY} -p 6432 -U morpheus -d morpheus -c "
    + shlex.quote("INSERT INTO failover_drill DEFAULT VALUES RETURNING id")
)


def _streams(standby):
    return psql(standby, "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")


def _refused(host, message):
    """A failover that must be refused: nothing changes on the primary."""
    started = psql(host, "SELECT pg_postmaster_start_time()")
    rc, output, _ = failover({})
    assert rc != 0
    assert message in output, output[-3000:]
    assert "Nothing was changed" in output
    assert psql(host, "SELECT pg_postmaster_start_time()") == started
    assert host.run("test -e /var/lib/postgresql/FENCED").rc != 0
    # And nothing went on elsewhere: the standby was not promoted.
    standby = instance("morpheus-data-2")
    if standby.run(f"systemctl is-active {UNIT}").stdout.strip() == "active":
        assert psql(standby, "SELECT pg_is_in_recovery()") == "t"


def test_a_standby_left_behind_by_a_recovery_is_no_failover_target(host):
    """The recoveries gave the primary new timelines the standby cannot follow: it is in
    recovery and answers, but does not stream while the primary answers."""
    _refused(host, "does not stream from morpheus-data, which answers")


def test_a_standby_left_behind_by_a_recovery_rejoins(host):
    standby = instance("morpheus-data-2")
    rc, output, seconds = failover({"rejoin": "morpheus-data-2"})
    assert rc == 0, output[-4000:]
    assert _streams(standby) == "t|streaming"
    say(f"rejoin: morpheus-data-2 rebuilt as a standby by failover.yml in {seconds:.0f} s")


def test_a_failover_to_a_standby_that_is_down_is_refused(host):
    standby = instance("morpheus-data-2")
    assert standby.run(f"systemctl stop {UNIT}").rc == 0
    try:
        _refused(host, "Nothing was changed: the standby morpheus-data-2 is not healthy")
    finally:
        started = standby.run(f"timeout 120 systemctl start {UNIT}")
    assert started.rc == 0, started.stderr
    for _ in range(50):
        if _streams(standby) == "t|streaming":
            break
        time.sleep(0.2)
    assert _streams(standby) == "t|streaming"


def test_failover_under_writes_loses_no_committed_row(host):
    new = instance("morpheus-data-2")
    psql(host, "DROP TABLE IF EXISTS failover_drill")
    psql(
        host, "CREATE TABLE failover_drill (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"
    )
    psql(host, "GRANT ALL ON failover_drill, failover_drill_id_seq TO morpheus")
    loop = (
        f'while :; do out=$({WRITE} 2>&1) && echo "ok $out" || echo "error $out"; sleep 0.05; done'
    )
    host.run(f"rm -f {WRITER_LOG}")
    host.run(
        f"systemd-run --unit=failover-writer /bin/bash -c {shlex.quote(loop + ' >> ' + WRITER_LOG)}"
    )
    try:
        time.sleep(5)
        rc, output, seconds = failover({})
        assert rc == 0, output[-4000:]
        time.sleep(5)
    finally:
        host.run("systemctl stop failover-writer.service; systemctl reset-failed failover-writer")
    lines = host.run(f"cat {WRITER_LOG}").stdout.splitlines()
    committed = [int(line.split()[1]) for line in lines if line.startswith("ok ")]
    errors = [line for line in lines if line.startswith("error")]

    # The promoted host is the primary; the old one is fenced and stays down.
    assert psql(new, "SELECT pg_is_in_recovery()") == "f"
    assert host.run(f"systemctl is-active {UNIT}").stdout.strip() != "active"
    assert host.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "masked"
    assert host.run(f"systemctl start {UNIT}").rc != 0
    assert "morpheus-data-2 was promoted" in host.file("/var/lib/postgresql/FENCED").content_string

    # Writes went on through the same PgBouncer, to the new primary, and every row a
    # client saw committed is there.
    on_new = {int(i) for i in psql(new, "SELECT id FROM failover_drill").split()}
    missing = sorted(set(committed) - on_new)
    promoted_after = float(re.search(r"is the primary, promoted ([0-9.]+) s after", output)[1])
    say(
        f"failover: promoted in {promoted_after:.1f} s (failover.yml {seconds:.0f} s); "
        f"{len(committed)} rows committed through PgBouncer, {len(missing)} missing on the new "
        f"primary, {len(errors)} writes refused during the switch"
    )
    assert not missing, missing[:20]
    after = psql(new, "SELECT count(*) FROM failover_drill WHERE at > now() - interval '4 seconds'")
    assert int(after) > 0, "no write reached the new primary after the failover"


def test_the_fenced_primary_is_refused_by_a_converge_until_it_rejoins(host):
    rc, output = ansible_playbook(
        PROJECT / "molecule" / "data" / "converge.yml",
        {"morpheus_postgres_primary": "morpheus-data-2"},
        tags="postgresql_preflight",
        options=["--limit", "morpheus-data"],
    )
    assert rc != 0
    assert "Nothing was changed: morpheus-data was fenced by a failover" in output, output[-3000:]
    assert "playbooks/failover.yml -e rejoin=morpheus-data" in output


def test_the_old_primary_rejoins_as_a_standby_of_the_new(host):
    new = instance("morpheus-data-2")
    rc, output, seconds = failover({"rejoin": "morpheus-data"}, primary="morpheus-data-2")
    assert rc == 0, output[-4000:]
    assert _streams(host) == "t|streaming"
    assert host.run("test -e /var/lib/postgresql/FENCED").rc != 0
    marker = f"rejoined-{time.time_ns()}"
    psql(new, "INSERT INTO failover_drill (id) VALUES (-1) ON CONFLICT DO NOTHING")
    psql(new, f"COMMENT ON TABLE failover_drill IS '{marker}'")
    for _ in range(50):
        if psql(host, "SELECT obj_description('failover_drill'::regclass)") == marker:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the rejoined standby does not follow the new primary")
    # PgBouncer's read-only database now serves from the rejoined host.
    served = host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -XAtq -h {STANDBY} -p 6432 -U morpheus -d morpheus_ro "
        "-c 'SELECT pg_is_in_recovery(), inet_server_addr()'"
    )
    assert served.rc == 0, served.stderr
    assert served.stdout.strip().startswith("t|"), served.stdout
    say(f"rejoin: morpheus-data, the fenced primary, back as a standby in {seconds:.0f} s")
