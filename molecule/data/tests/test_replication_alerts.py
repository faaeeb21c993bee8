"""Replication and archiving faults raise their alerts, evaluated by Prometheus with the
platform's rules (replication.rules.yml) from the exporters' real series.

Runs after the point-in-time drills, which left the standby on a timeline the primary
no longer has, and before the failover drills, which rebuild it. Alerts are checked
pending or firing: pending means the rule's expression holds, and its `for` is tested
with promtool (tests/test_alert_rules.py).
"""

import time

import pytest
from conftest import instance
from figures import say
from pg import psql
from promql import alert, value, wait_for

pytestmark = pytest.mark.drill

testinfra_hosts = ["morpheus-data"]


def test_a_standby_left_behind_by_a_recovery_raises_an_alert(host):
    standby = instance("morpheus-data-2")
    assert psql(standby, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')") != (
        "streaming"
    )
    seconds = wait_for(
        alert("PostgresqlStandbyNotStreaming", "morpheus-data-2"), 90, "the standby's alert"
    )
    assert value('pg_standby_streaming{host="morpheus-data-2"}') == 0
    say(f"alerts: PostgresqlStandbyNotStreaming pending within {seconds:.0f} s of the check")


def _switch_wal(host):
    """A write and a new WAL file, for the archiver to push."""
    psql(host, "CREATE TABLE IF NOT EXISTS archive_drill (at timestamptz DEFAULT now())")
    psql(host, "INSERT INTO archive_drill DEFAULT VALUES")
    psql(host, "SELECT pg_switch_wal()")


def test_wal_archiving_that_fails_raises_an_alert_until_it_goes_through_again(host):
    s3 = instance("morpheus-data-s3")
    failing = 'pg_archiver_failing{host="morpheus-data"} == 1'
    assert value('pg_archiver_failing{host="morpheus-data"}') == 0
    # The repository's TLS front stops: every push is refused.
    assert s3.run("systemctl stop nginx").rc == 0
    try:
        started = time.monotonic()
        _switch_wal(host)
        wait_for(failing, 180, "archiving's failure")
        failed_after = time.monotonic() - started
        wait_for(alert("PostgresqlWalArchivingFailing", "morpheus-data"), 30, "the archiving alert")
        alert_after = time.monotonic() - started
    finally:
        assert s3.run("systemctl start nginx").rc == 0
    started = time.monotonic()
    deadline = started + 180
    while value('pg_archiver_failing{host="morpheus-data"}') != 0:
        assert time.monotonic() < deadline, "archiving did not go through again"
        _switch_wal(host)
        time.sleep(5)
    recovered_after = time.monotonic() - started
    wait_for('absent(ALERTS{alertname="PostgresqlWalArchivingFailing"})', 30, "the alert's end")
    ready = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
    for _ in range(60):
        if psql(host, ready) == "0":
            break
        time.sleep(1)
    else:
        raise AssertionError(f"{psql(host, ready)} WAL files still wait to be archived")
    say(
        f"alerts: WAL archiving refused: pg_archiver_failing after {failed_after:.0f} s, "
        f"PostgresqlWalArchivingFailing pending after {alert_after:.0f} s; archiving went "
        f"through {recovered_after:.0f} s after the repository came back, nothing left behind"
    )
