"""Continuous archiving and point-in-time recovery with pgBackRest, through the real
playbooks: the recovery point and recovery time of a lost disk, a recovery to a chosen
moment, a recovery that fails and is undone, and refusals that touch nothing.

The tests run in order and share one history: a writer commits a row every ~0.1 s
while the disk is lost, and the rows it logged say what every recovery must bring back.
"""

import json
import shlex
import time

import pytest
from conftest import PROJECT, ansible_playbook
from figures import say
from pg import UNIT, psql

pytestmark = pytest.mark.drill

testinfra_hosts = ["morpheus-data"]

STANZA = "morpheus"
DATA_DIR = "/var/lib/postgresql/15/main"
# postgresql_archive_timeout in molecule.yml: the most committed data a lost disk may
# take with it, plus the few seconds asynchronous archiving takes to push a file.
ARCHIVE_TIMEOUT = 15
PUSH_SECONDS = 5
WRITER_LOG = "/var/tmp/pitr-writer.log"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
# What the drills learn and later ones use (module order is run order).
HISTORY = {}


def _pgbackrest_info(host):
    result = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} --output=json info")
    assert result.rc == 0, result.stdout + result.stderr
    return json.loads(result.stdout)[0]


def _restore(extra_vars):
    started = time.monotonic()
    rc, output = ansible_playbook(
        PROJECT / "playbooks" / "restore.yml", {"restore_confirm": "yes", **extra_vars}
    )
    return rc, output, time.monotonic() - started


def _untouched(host):
    """What a refused recovery must leave as it was: the running server and its data."""
    return (
        psql(host, "SELECT pg_postmaster_start_time()"),
        psql(host, "SELECT count(*) FROM pitr_drill"),
        host.run("systemctl is-active pgbouncer").stdout.strip(),
    )


def _utc(epoch):
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1e6):06d}+00"
    )


def _writer_rows(host):
    """(id, commit epoch) of each row the writer saw committed, in order."""
    lines = host.run(f"cat {WRITER_LOG}").stdout.split()
    return [(int(row_id), float(epoch)) for row_id, epoch in (line.split("|") for line in lines)]


def test_wal_is_archived_to_an_encrypted_repository(host):
    assert psql(host, "SHOW archive_mode", "postgres") == "on"
    assert psql(host, "SHOW archive_timeout", "postgres") == f"{ARCHIVE_TIMEOUT}s"
    check = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert check.rc == 0, check.stdout + check.stderr
    info = _pgbackrest_info(host)
    assert info["status"]["code"] == 0, info["status"]
    assert [repo["cipher"] for repo in info["repo"]] == ["aes-256-cbc"]
    # The converge's first full backup.
    assert [backup["type"] for backup in info["backup"]][:1] == ["full"], info["backup"]
    archived = psql(host, "SELECT archived_count, failed_count FROM pg_stat_archiver", "postgres")
    assert int(archived.split("|")[0]) > 0, archived


def test_scheduled_backups_run_through_their_units(host):
    # A database of a stated size for the recovery time: pgbench's tables at scale 10.
    init = host.run(
        "runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -i -s 10 -q morpheus"
    )
    assert init.rc == 0, init.stderr
    HISTORY["size_mb"] = int(psql(host, "SELECT pg_database_size('morpheus') / 1048576"))
    host.run(f"mkdir -p {TEXTFILE_DIR}")
    started = float(host.run("date +%s").stdout)
    for kind in ("full", "diff"):
        run = host.run(f"systemctl start pgbackrest-backup@{kind}.service")
        journal = host.run(f"journalctl -u pgbackrest-backup@{kind} --no-pager -n 20").stdout
        assert run.rc == 0, journal
    types = [backup["type"] for backup in _pgbackrest_info(host)["backup"]]
    assert types[-2:] == ["full", "diff"], types
    # Each run is recorded for the BackupTooOld and BackupFailed alerts.
    metrics = host.run(f"cat {TEXTFILE_DIR}/morpheus_backup_pgbackrest.prom").stdout
    assert 'morpheus_backup_last_status{target="pgbackrest"} 1' in metrics, metrics
    last = float(
        metrics.split('morpheus_backup_last_success_timestamp_seconds{target="pgbackrest"} ')[
            1
        ].split()[0]
    )
    assert last >= started, metrics
    timers = host.run("systemctl list-timers --all --no-pager pgbackrest-*").stdout
    assert "pgbackrest-full.timer" in timers and "pgbackrest-diff.timer" in timers, timers


@pytest.fixture(scope="module")
def writer(host):
    """A client committing a row every ~0.1 s, logging each id and commit time (its
    clock_timestamp() inside the transaction) once the commit returned."""
    psql(
        host,
        "DROP TABLE IF EXISTS pitr_drill; CREATE TABLE pitr_drill "
        "(id bigserial PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    insert = "INSERT INTO pitr_drill DEFAULT VALUES RETURNING id, extract(epoch FROM written_at)"
    loop = (
        f"while :; do psql -XAtq -d morpheus -c {shlex.quote(insert)} >> {WRITER_LOG} 2>/dev/null;"
        " sleep 0.1; done"
    )
    host.run(f"rm -f {WRITER_LOG}; install -o postgres -m 0644 /dev/null {WRITER_LOG}")
    started = host.run(
        f"systemd-run --unit=pitr-writer --uid=postgres /bin/bash -c {shlex.quote(loop)}"
    )
    assert started.rc == 0, started.stderr
    yield
    host.run("systemctl stop pitr-writer.service; systemctl reset-failed pitr-writer.service")


def test_a_lost_disk_is_recovered_to_the_last_archived_commit(host, writer):
    # 1. Rows committed continuously for twice archive_timeout, so WAL files were switched
    #    and archived on time while the writer ran.
    time.sleep(2 * ARCHIVE_TIMEOUT + 5)

    # 2. The disk is lost: PostgreSQL dies and its data directory is gone.
    crash = float(host.run("date +%s.%N").stdout)
    killed = host.run(f"systemctl kill -s KILL {UNIT} && rm -rf {DATA_DIR}")
    assert killed.rc == 0, killed.stderr
    time.sleep(1)
    host.run("systemctl stop pitr-writer.service")
    rows = _writer_rows(host)
    assert len(rows) > 100, len(rows)
    # The moment the next drill recovers to: between two commits, ten seconds back.
    chosen = max(i for i, (_, epoch) in enumerate(rows) if epoch < crash - 10)
    HISTORY["target"] = rows[chosen][1] + 0.05
    HISTORY["rows_by_target"] = rows[: chosen + 1]

    # 3. Recovery to the end of the archive, timed.
    rc, output, seconds = _restore({"target_time": "latest"})
    assert rc == 0, output[-4000:]
    assert "Recovered the PostgreSQL cluster on morpheus-data to the end of the archive" in output

    # 4. Every row up to the last one recovered is there; what is lost was committed in
    #    the last archive_timeout before the crash.
    recovered = int(psql(host, "SELECT max(id) FROM pitr_drill"))
    assert int(psql(host, f"SELECT count(*) FROM pitr_drill WHERE id <= {recovered}")) == recovered
    lost = [epoch for row_id, epoch in rows if row_id > recovered]
    rpo = crash - lost[0] if lost else 0.0
    say(
        f"lost disk: {len(rows)} rows committed, {len(lost)} lost, RPO {rpo:.1f} s "
        f"(archive_timeout {ARCHIVE_TIMEOUT} s); RTO {seconds:.0f} s for restore.yml on a "
        f"{HISTORY['size_mb']} MB database"
    )
    assert rpo <= ARCHIVE_TIMEOUT + PUSH_SECONDS, (rpo, lost)
    assert psql(host, "SELECT pg_is_in_recovery()") == "f"
    assert host.run("systemctl is-active pgbouncer").stdout.strip() == "active"


def test_recovery_to_a_point_in_time_keeps_every_row_up_to_it_and_none_after(host):
    target = HISTORY["target"]
    expected = HISTORY["rows_by_target"]
    rc, output, seconds = _restore({"target_time": _utc(target)})
    assert rc == 0, output[-4000:]
    count, last_id, last_at = psql(
        host, "SELECT count(*), max(id), extract(epoch FROM max(written_at)) FROM pitr_drill"
    ).split("|")
    say(f"point in time: {count} rows back, as at {_utc(target)}; restore.yml {seconds:.0f} s")
    assert (int(count), int(last_id)) == (len(expected), expected[-1][0])
    assert float(last_at) <= target
    # The recovery's target is not left for a standby copied from this primary to inherit.
    auto_conf = host.file(f"{DATA_DIR}/postgresql.auto.conf").content_string
    assert "recovery_target" not in auto_conf, auto_conf
    # The previous data directory went once the recovered one answered.
    assert host.run(f"ls -d {DATA_DIR}.before-restore-* 2>/dev/null").stdout == ""
    # The recovered primary archives again, on its new timeline.
    check = host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} check")
    assert check.rc == 0, check.stdout + check.stderr


def test_a_recovery_that_cannot_reach_its_target_is_undone(host):
    """No commit after the target is archived yet: PostgreSQL ends recovery before the
    target and refuses to start; the playbook puts the previous cluster back."""
    before = _untouched(host)
    target = float(host.run("date +%s.%N").stdout) - 1
    rc, output, _ = _restore({"target_time": _utc(target)})
    assert rc != 0
    assert f"The recovery to {_utc(target)} failed and was undone" in output, output[-4000:]
    assert "the previous data directory is back and running" in output
    assert psql(host, "SELECT pg_is_in_recovery()") == "f"
    assert _untouched(host)[1:] == before[1:]
    assert host.run(f"ls -d {DATA_DIR}.before-restore-* 2>/dev/null").stdout == ""


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"target_time": "1999-01-01 00:00:00+00"}, "is before the end of the first backup"),
        ({"target_time": "2999-01-01 00:00:00+00"}, "is in the future"),
        ({"target_time": "yesterday at noonish"}, "is not a time"),
        (
            {"target_time": "latest", "pgbackrest_stanza": "nosuch"},
            "the repository's stanza 'nosuch' cannot be recovered from (missing stanza path)",
        ),
        (
            {"target_time": "latest", "restore_confirm": "no"},
            "run again with -e restore_confirm=yes",
        ),
    ],
    ids=["before-first-backup", "future", "not-a-time", "missing-stanza", "unconfirmed"],
)
def test_a_bad_recovery_request_is_refused_with_nothing_touched(host, extra_vars, message):
    before = _untouched(host)
    rc, output, _ = _restore(extra_vars)
    assert rc != 0
    assert message in output, output[-4000:]
    assert "Nothing was changed" in output
    assert _untouched(host) == before
