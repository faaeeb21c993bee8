"""The data tier end to end: pooled SCRAM logins, a queue that keeps its jobs, and a
nightly backup that restores to identical data through the real playbooks."""

import json
import re

import pytest
from conftest import PROJECT, ansible_playbook, instance
from pg import APP_PASSWORD

testinfra_hosts = ["morpheus-data"]

PGB_ADMIN_PASSWORD = "test-only-pgbouncer-admin-password"  # test-only value
REDIS_APP = ("morpheus", "test-only-redis-app-password")  # test-only value
REDIS_ADMIN = ("admin", "test-only-redis-admin-password")  # test-only value
BACKUP_DIR = "/var/backups/morpheus"
# The node exporter's textfile collector directory (none runs here: the test makes it).
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
# The test S3 server (moto, TLS) that prepare.yml runs on morpheus-data-s3.
S3_BUCKET = "morpheus-backups"
S3_PREFIX = "data-scenario"
STAMP = r"^[0-9]{8}T[0-9]{6}Z$"
# Lists the nightly backups' prefix of the bucket with the backup's own (test-only) key:
# {key: sha256 of the object}.
S3_LIST = """
import hashlib, json, sys
import boto3
key = json.load(open("/root/s3-test-key.json"))
s3 = boto3.client("s3", endpoint_url="https://127.0.0.1:5000", region_name="us-east-1",
                  verify="/etc/moto-tls/ca.pem",
                  aws_access_key_id=key["access_key_id"],
                  aws_secret_access_key=key["secret_access_key"])
out = {}
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2] + "/")
for page in pages:
    for obj in page.get("Contents", []):
        body = s3.get_object(Bucket=sys.argv[1], Key=obj["Key"])["Body"].read()
        out[obj["Key"]] = hashlib.sha256(body).hexdigest()
print(json.dumps(out))
"""


def _journal(host, unit):
    return host.run(f"journalctl -u {unit} --no-pager -n 50").stdout


def _address(host):
    return host.run("hostname -I").stdout.split()[0]


def _app_sql(host, sql):
    """As the application: through PgBouncer, on the private address, with SCRAM."""
    return host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -X -At -v ON_ERROR_STOP=1 -h {_address(host)} -p 6432 "
        f"-U morpheus -d morpheus -c {json.dumps(sql)}"
    )


def _redis(host, user, *args):
    name, password = user
    quoted = " ".join(json.dumps(a) for a in args)
    return host.run(f"REDISCLI_AUTH={password} redis-cli --no-auth-warning --user {name} {quoted}")


def _playbook(name, extra_vars=None):
    return ansible_playbook(PROJECT / "playbooks" / name, extra_vars)


@pytest.mark.parametrize(
    "unit",
    ["postgresql@15-main", "pgbouncer", "redis-server", "morpheus-backup.timer"],
)
def test_units_are_running(host, unit):
    service = host.service(unit)
    assert service.is_running, _journal(host, unit)
    assert service.is_enabled, _journal(host, unit)


def test_new_cluster_has_data_checksums(host):
    # This host had no PostgreSQL before: the role created the cluster with checksums.
    result = host.run("runuser -u postgres -- psql -X -At -c 'SHOW data_checksums'")
    assert result.stdout.strip() == "on", result.stderr


def test_app_runs_a_transaction_through_pgbouncer(host):
    result = _app_sql(
        host,
        "BEGIN; CREATE TABLE IF NOT EXISTS pool_probe (id int PRIMARY KEY);"
        " INSERT INTO pool_probe VALUES (1) ON CONFLICT DO NOTHING;"
        " SELECT current_user, count(*) FROM pool_probe; COMMIT;",
    )
    assert result.rc == 0, result.stderr + _journal(host, "pgbouncer")
    assert "morpheus|1" in result.stdout.split()


def test_show_pools_answers(host):
    result = host.run(
        f"PGPASSWORD={PGB_ADMIN_PASSWORD} psql -X -At -h 127.0.0.1 -p 6432 -U pgbouncer_admin "
        "-d pgbouncer -c 'SHOW POOLS'"
    )
    assert result.rc == 0, result.stderr
    assert any(line.startswith("morpheus|morpheus|") for line in result.stdout.splitlines())


def test_redis_asks_for_auth(host):
    result = host.run("redis-cli PING")
    assert "NOAUTH" in result.stdout + result.stderr


def test_redis_denies_flushall_to_the_app(host):
    result = _redis(host, REDIS_APP, "FLUSHALL")
    assert "NOPERM" in result.stdout, result.stdout + result.stderr


def test_a_queued_job_survives_a_redis_restart(host):
    _redis(host, REDIS_APP, "DEL", "bull:comics:wait", "bull:comics:42")
    _redis(host, REDIS_APP, "HSET", "bull:comics:42", "name", "render", "data", '{"page":1}')
    assert _redis(host, REDIS_APP, "LPUSH", "bull:comics:wait", "42").stdout.strip() == "1"
    restart = host.run("systemctl restart redis-server")
    assert restart.rc == 0, _journal(host, "redis-server")
    host.run("for i in $(seq 1 50); do redis-cli PING | grep -q NOAUTH && break; sleep 0.1; done")
    assert _redis(host, REDIS_APP, "LRANGE", "bull:comics:wait", "0", "-1").stdout.split() == ["42"]
    assert _redis(host, REDIS_APP, "HGET", "bull:comics:42", "data").stdout.strip() == '{"page":1}'


def _s3_objects(host):
    """Every object in the test bucket with the sha256 of its content, read back (on the
    S3 host, with the backup's key)."""
    s3 = instance("morpheus-data-s3")
    result = s3.run(f"/opt/moto/bin/python - {S3_BUCKET} {S3_PREFIX} <<'EOF'\n{S3_LIST}\nEOF")
    assert result.rc == 0, result.stderr + _journal(s3, "moto-s3")
    return json.loads(result.stdout)


def _s3_backups(host):
    """The backup names (UTC times) found under the prefix in the bucket."""
    return sorted({key.split("/")[1] for key in _s3_objects(host) if key.count("/") == 2})


def _local_backups(host):
    listing = host.run(f"ls -1 {BACKUP_DIR}").stdout.split()
    return sorted(name for name in listing if re.match(STAMP, name))


def _sums(text):
    """sha256sum output as {file: sha256}."""
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in text.splitlines())}


def _local_sums(host, backup):
    """{file: sha256} of every file of a local backup, computed now."""
    computed = host.run(f"cd {BACKUP_DIR}/{backup} && sha256sum -- *")
    assert computed.rc == 0, computed.stderr
    return _sums(computed.stdout)


def _fingerprint(host):
    result = _app_sql(
        host,
        "SELECT count(*) || ':' || md5(string_agg(id || '/' || payload, ',' ORDER BY id))"
        " FROM drill",
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def _queue(host):
    return _redis(host, REDIS_APP, "LRANGE", "bull:drill:wait", "0", "-1").stdout.split()


def test_restore_drill(host):
    # 1. Data worth keeping, in PostgreSQL and in the queue.
    setup = _app_sql(
        host,
        "DROP TABLE IF EXISTS drill; CREATE TABLE drill (id int PRIMARY KEY, payload text);"
        " INSERT INTO drill SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
    )
    assert setup.rc == 0, setup.stderr
    _redis(host, REDIS_APP, "DEL", "bull:drill:wait")
    _redis(host, REDIS_APP, "RPUSH", "bull:drill:wait", "job-1", "job-2", "job-3")
    rows, jobs = _fingerprint(host), _queue(host)
    assert rows.startswith("5000:")
    assert jobs == ["job-1", "job-2", "job-3"]

    # 2. The real backup playbook.
    rc, output = _playbook("backup.yml")
    assert rc == 0, output[-3000:] + _journal(host, "morpheus-backup")
    latest = host.run(f"ls -1 {BACKUP_DIR} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$' | tail -1")
    backup = latest.stdout.strip()
    files = host.run(f"ls -1 {BACKUP_DIR}/{backup}").stdout.split()
    assert sorted(files) == [
        "SHA256SUMS",
        "postgresql-morpheus.dump",
        "redis-appendonlydir.tar.gz",
        "redis-dump.rdb",
    ]
    assert host.run(f"cd {BACKUP_DIR}/{backup} && sha256sum --check --strict SHA256SUMS").rc == 0

    # 3. Disaster: the database is gone, the queue is emptied.
    dropped = host.run("runuser -u postgres -- dropdb --force morpheus")
    assert dropped.rc == 0, dropped.stderr
    assert _redis(host, REDIS_ADMIN, "FLUSHALL").stdout.strip() == "OK"
    # Asked of PostgreSQL itself: through PgBouncer, a login to a database that is gone
    # waits out query_wait_timeout (two minutes) before it fails.
    gone = host.run("runuser -u postgres -- psql -X -At -d morpheus -c 'SELECT 1'")
    assert gone.rc != 0 and 'database "morpheus" does not exist' in gone.stderr, gone.stderr
    assert _queue(host) == []

    # 4. Without confirmation the restore refuses and says what to pass.
    rc, output = _playbook("restore.yml")
    assert rc != 0
    assert "To go ahead, run again with -e restore_confirm=yes" in output, output[-3000:]

    # 5. The real restore playbook, confirmed.
    rc, output = _playbook("restore.yml", {"restore_confirm": "yes"})
    assert rc == 0, output[-3000:]
    assert f"from backup {backup}" in output

    # 6. Identical rows (count and checksum) and the same jobs.
    assert _fingerprint(host) == rows
    assert _queue(host) == jobs


def test_backup_is_shipped_to_s3_with_the_same_checksums(host):
    # A real run of the backup playbook ships the backup to the test S3 server.
    rc, output = _playbook("backup.yml")
    assert rc == 0, output[-3000:] + _journal(host, "morpheus-backup")
    backup = _local_backups(host)[-1]
    local = _local_sums(host, backup)
    assert sorted(local) == [
        "SHA256SUMS",
        "postgresql-morpheus.dump",
        "redis-appendonlydir.tar.gz",
        "redis-dump.rdb",
    ]
    objects = _s3_objects(host)
    shipped = {
        key.removeprefix(f"{S3_PREFIX}/{backup}/"): digest
        for key, digest in objects.items()
        if key.startswith(f"{S3_PREFIX}/{backup}/")
    }
    # Every file, byte for byte (sha256 of the object read back), under prefix/<time>/.
    assert shipped == local, (sorted(objects), _journal(host, "morpheus-backup"))
    # And the shipped manifest matches the shipped dumps and Redis files.
    manifest = _sums(host.run(f"cat {BACKUP_DIR}/{backup}/SHA256SUMS").stdout)
    assert manifest == {name: digest for name, digest in shipped.items() if name != "SHA256SUMS"}
    journal = _journal(host, "morpheus-backup")
    assert f"shipped {backup} to s3://{S3_BUCKET}/{S3_PREFIX}/{backup}" in journal, journal


def test_restore_refuses_a_backup_that_fails_its_checksums(host):
    latest = host.run(f"ls -1 {BACKUP_DIR} | grep -E '^[0-9]{{8}}T[0-9]{{6}}Z$' | tail -1")
    source = f"{BACKUP_DIR}/{latest.stdout.strip()}"
    tampered = "19990101T000000Z"
    host.run(f"rm -rf {BACKUP_DIR}/{tampered} && cp -a {source} {BACKUP_DIR}/{tampered}")
    host.run(f"echo tampered >> {BACKUP_DIR}/{tampered}/postgresql-morpheus.dump")
    before = _fingerprint(host)
    rc, output = _playbook("restore.yml", {"restore_confirm": "yes", "restore_backup": tampered})
    host.run(f"rm -rf {BACKUP_DIR}/{tampered}")
    assert rc != 0
    assert f"Nothing was changed: backup {tampered} fails its checksum check" in output, output[
        -3000:
    ]
    assert "postgresql-morpheus.dump: FAILED" in output
    assert _fingerprint(host) == before


def test_restore_names_the_backups_when_asked_for_a_missing_one(host):
    rc, output = _playbook("restore.yml", {"restore_confirm": "yes", "restore_backup": "nope"})
    assert rc != 0
    assert "Nothing was changed: no backup 'nope' in /var/backups/morpheus. Available:" in output


def test_retention_keeps_the_newest_backups(host):
    for _ in range(3):
        run = host.run("systemctl start morpheus-backup.service")
        assert run.rc == 0, _journal(host, "morpheus-backup")
    listing = host.run(f"ls -1 {BACKUP_DIR}").stdout.split()
    assert len([name for name in listing if name.endswith("Z")]) == 2, listing
    assert not [name for name in listing if name.startswith(".partial")]
    # Retention is local only (see the role's README): the bucket keeps every shipped
    # backup, the two kept here among them; expiry there is the bucket's lifecycle rule.
    in_bucket = _s3_backups(host)
    assert set(_local_backups(host)) <= set(in_bucket), in_bucket
    assert len(in_bucket) >= 5, in_bucket


def test_a_backup_started_in_the_same_second_as_another_takes_the_next(host):
    """Two runs in one second (the timer's and an operator's) both complete: the later
    one waits for a second whose name is free. Here runs hold this second and the next
    two (their .partial directories)."""
    taken = host.run(
        'for s in 0 1 2; do d=$(date -u -d "+$s sec" +%Y%m%dT%H%M%SZ); '
        f"mkdir -p {BACKUP_DIR}/.partial-$d; echo $d; done"
    ).stdout.split()
    before = _local_backups(host)
    try:
        run = host.run("systemctl start morpheus-backup.service")
    finally:
        host.run(f"rm -rf {' '.join(f'{BACKUP_DIR}/.partial-{t}' for t in taken)}")
    assert run.rc == 0, _journal(host, "morpheus-backup")
    new = sorted(set(_local_backups(host)) - set(before))
    assert len(new) == 1 and new[0] > max(taken), (taken, new)


def _backup_metrics(host, target):
    """{metric: value} of a target's textfile for the node exporter."""
    text = host.run(f"cat {TEXTFILE_DIR}/morpheus_backup_{target}.prom").stdout
    return {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("morpheus_backup_") and f'target="{target}"' in line
    }


def test_each_run_is_recorded_for_prometheus(host):
    host.run(f"mkdir -p {TEXTFILE_DIR}")
    started = float(host.run("date +%s").stdout)
    run = host.run("systemctl start morpheus-backup.service")
    assert run.rc == 0, _journal(host, "morpheus-backup")
    metrics = _backup_metrics(host, "nightly")
    assert metrics["morpheus_backup_last_status"] == 1, metrics
    assert metrics["morpheus_backup_last_success_timestamp_seconds"] >= started, metrics


def test_a_failed_upload_fails_the_backup_and_keeps_the_local_copy(host):
    env = "/etc/morpheus-backup/env"
    before_local, before_bucket = _local_backups(host), _s3_backups(host)
    before_metrics = _backup_metrics(host, "nightly")
    host.run(f"cp -p {env} {env}.good")
    try:
        host.run(
            "sed -i 's/^RCLONE_CONFIG_BACKUP_SECRET_ACCESS_KEY=.*/"
            f"RCLONE_CONFIG_BACKUP_SECRET_ACCESS_KEY=test-only-wrong-secret/' {env}"
        )
        run = host.run("systemctl start morpheus-backup.service")
        state = host.run("systemctl is-failed morpheus-backup.service").stdout.strip()
        journal = _journal(host, "morpheus-backup")
    finally:
        host.run(f"mv {env}.good {env} && systemctl reset-failed morpheus-backup.service")
    # Visible: systemctl fails, the unit is failed, the journal says what happened.
    assert run.rc != 0, journal
    assert state == "failed", journal
    assert "SignatureDoesNotMatch" in journal, journal
    # Recorded for the BackupFailed alert; the last success stays the previous run's.
    failed_metrics = _backup_metrics(host, "nightly")
    assert failed_metrics["morpheus_backup_last_status"] == 0, failed_metrics
    assert (
        failed_metrics["morpheus_backup_last_success_timestamp_seconds"]
        == before_metrics["morpheus_backup_last_success_timestamp_seconds"]
    )
    new = sorted(set(_local_backups(host)) - set(before_local))
    assert len(new) == 1, (before_local, _local_backups(host))
    assert f"shipping {new[0]} to s3://{S3_BUCKET}/{S3_PREFIX}/{new[0]} FAILED" in journal, journal
    assert f"the local backup {BACKUP_DIR}/{new[0]} is kept" in journal, journal
    # The local backup is whole and checks out; nothing of it reached the bucket.
    check = host.run(f"cd {BACKUP_DIR}/{new[0]} && sha256sum --check --strict SHA256SUMS")
    assert check.rc == 0, check.stdout + check.stderr
    assert _s3_backups(host) == before_bucket
    # With the right key again, the next run ships.
    again = host.run("systemctl start morpheus-backup.service")
    assert again.rc == 0, _journal(host, "morpheus-backup")
    assert _local_backups(host)[-1] in _s3_backups(host)


def test_backup_timer_is_scheduled(host):
    timer = host.run("systemctl show -p TimersCalendar --value morpheus-backup.timer").stdout
    assert "OnCalendar=*-*-* 03:15:00" in timer
