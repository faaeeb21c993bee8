"""The redis role: a queue store that asks for AUTH, confines the app, and keeps jobs."""

import json

import pytest
from conftest import ansible_playbook, scenario_file

ADMIN = ("admin", "test-only-redis-admin-password")  # test-only value
APP = ("morpheus", "test-only-redis-app-password")  # test-only value
EXPORTER = ("redis_exporter", "test-only-redis-exporter-password")  # test-only value


def _journal(host):
    return host.run("journalctl -u redis-server --no-pager -n 50").stdout


def _cli(host, user, *args):
    name, password = user
    quoted = " ".join(json.dumps(a) for a in args)
    return host.run(f"REDISCLI_AUTH={password} redis-cli --user {name} {quoted}")


def _address(host):
    return host.run("hostname -I").stdout.split()[0]


def test_service_runs_with_raised_limits(host):
    service = host.service("redis-server")
    assert service.is_running, _journal(host)
    assert service.is_enabled, _journal(host)
    limit = host.run("systemctl show -p LimitNOFILE --value redis-server").stdout.strip()
    assert limit == "65535"


def test_listens_on_loopback_and_private_address_only(host):
    assert host.socket("tcp://127.0.0.1:6379").is_listening
    assert host.socket(f"tcp://{_address(host)}:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("maxmemory-policy", "noeviction"),
        ("maxmemory", str(64 * 1024 * 1024)),
        ("protected-mode", "yes"),
    ],
)
def test_persistence_settings_are_live(host, name, value):
    result = _cli(host, ADMIN, "CONFIG", "GET", name)
    assert result.stdout.split() == [name, value], result.stderr


def test_unauthenticated_clients_get_nothing(host):
    result = host.run("redis-cli PING")
    assert "NOAUTH" in result.stdout + result.stderr
    default = host.run("redis-cli --user default --pass '' PING")
    assert "PONG" not in default.stdout


def test_acl_file_holds_hashes_only(host):
    acl = host.file("/etc/redis/users.acl")
    assert acl.mode == 0o640
    assert acl.user == "redis"
    assert not acl.contains("test-only")


def test_app_user_works_its_queue_with_scripts(host):
    assert _cli(host, APP, "SET", "bull:probe", "1").stdout.strip() == "OK"
    script = "return redis.call('INCR', KEYS[1])"
    assert _cli(host, APP, "EVAL", script, "1", "bull:probe").stdout.strip() == "2"
    assert "redis_version" in _cli(host, APP, "INFO", "server").stdout


def test_app_user_keeps_the_services_own_keys(host):
    # Rate limits and worker heartbeats live under morpheus:<queue>:...
    assert (
        _cli(host, APP, "SET", "morpheus:comics:ratelimit:probe", "1", "EX", "5").stdout.strip()
        == "OK"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "GET", "maxmemory"],
        ["DEBUG", "SLEEP", "0"],
        ["KEYS", "*"],
        ["SHUTDOWN", "NOSAVE"],
        ["SET", "outside:prefix", "1"],
    ],
)
def test_app_user_is_denied_dangerous_commands_and_foreign_keys(host, command):
    # What the ACL says of the command, then the command itself.
    dryrun = _cli(host, ADMIN, "ACL", "DRYRUN", APP[0], *command)
    assert "no permissions" in dryrun.stdout, dryrun.stdout + dryrun.stderr
    result = _cli(host, APP, *command)
    # DEBUG is also switched off for everyone (enable-debug-command no).
    assert "NOPERM" in result.stdout or "DEBUG command not allowed" in result.stdout, result.stdout
    assert host.service("redis-server").is_running, _journal(host)


def test_exporter_user_reads_only(host):
    assert "used_memory" in _cli(host, EXPORTER, "INFO", "memory").stdout
    assert _cli(host, EXPORTER, "GET", "bull:probe").stdout.strip() == "2"
    assert "NOPERM" in _cli(host, EXPORTER, "SET", "bull:probe", "3").stdout


def _wait_for_redis(host):
    host.run("for i in $(seq 1 100); do redis-cli PING | grep -q NOAUTH && break; sleep 0.1; done")


# What BullMQ writes: its Lua scripts touch several keys, and Redis logs a script's
# writes in the append-only file as one MULTI/EXEC block. A restart replays that block
# as the default user, so a default user without commands loses every such write
# (Redis 7.0's NOPERM on replay). A plain LPUSH replays either way and proves nothing.
ENQUEUE = (
    "redis.call('HSET', KEYS[1], 'name', 'comic', 'data', ARGV[1]) "
    "redis.call('LPUSH', KEYS[2], ARGV[2]) "
    "return redis.call('LLEN', KEYS[2])"
)


@pytest.mark.parametrize(
    ("stop", "label"),
    [("systemctl restart redis-server", "restart"), ("kill -9", "kill")],
)
def test_jobs_written_by_scripts_and_transactions_survive(host, stop, label):
    wait, job = f"bull:survive-{label}:wait", f"bull:survive-{label}:job-1"
    _cli(host, APP, "DEL", wait, job, f"{wait}:tx")
    assert _cli(host, APP, "EVAL", ENQUEUE, "2", job, wait, "{}", "job-1").stdout.strip() == "1"
    transaction = host.run(
        f"printf 'MULTI\\nLPUSH {wait}:tx job-2\\nLPUSH {wait}:tx job-3\\nEXEC\\n' "
        f"| REDISCLI_AUTH={APP[1]} redis-cli --user {APP[0]}"
    )
    assert transaction.rc == 0, transaction.stderr
    if stop == "kill -9":
        pid = host.run("systemctl show -p MainPID --value redis-server").stdout.strip()
        assert host.run(f"kill -9 {pid}").rc == 0
        # systemd starts it again (Restart=always), which replays the append-only file.
        host.run(
            "for i in $(seq 1 100); do "
            f'[ "$(systemctl show -p MainPID --value redis-server)" != "{pid}" ] '
            '&& [ "$(systemctl show -p MainPID --value redis-server)" != 0 ] && break; '
            "sleep 0.1; done"
        )
    else:
        assert host.run(stop).rc == 0, _journal(host)
    _wait_for_redis(host)
    assert _cli(host, APP, "LRANGE", wait, "0", "-1").stdout.split() == ["job-1"], _journal(host)
    assert _cli(host, APP, "HGET", job, "name").stdout.strip() == "comic"
    assert _cli(host, APP, "LRANGE", f"{wait}:tx", "0", "-1").stdout.split() == ["job-3", "job-2"]
    replay = host.run("grep -c NOPERM /var/log/redis/redis-server.log || true").stdout.strip()
    assert replay == "0", "the append-only file's replay was refused:\n" + _journal(host)


def test_the_default_user_still_refuses_logins(host):
    assert "NOAUTH" in host.run("redis-cli PING").stdout
    refused = host.run("redis-cli --user default --pass '' PING")
    assert "WRONGPASS" in refused.stdout + refused.stderr


def test_overcommit_is_recorded_for_the_host(host):
    # A container shares the host's kernel: the role writes the setting and applies it
    # only on a real host, so the file is what can be checked here.
    assert host.file("/etc/sysctl.d/30-redis.conf").contains("^vm.overcommit_memory=1")


def test_a_changed_acl_is_reloaded_in_place_and_no_password_reaches_the_journal(host):
    """A new exporter password reaches Redis by ACL LOAD (same process, the new password
    works), and the admin password that ACL LOAD is sent with is in no journal line."""
    pid = host.run("systemctl show -p MainPID --value redis-server").stdout.strip()
    changed = ("redis_exporter", "test-only-redis-exporter-password-2")  # test-only value
    try:
        rc, output = ansible_playbook(
            scenario_file("converge.yml"),
            {"redis_exporter_password": changed[1]},
            tags="redis_preflight,redis_configure",
            timeout=300,
        )
        assert rc == 0, output[-3000:]
        assert "RUNNING HANDLER [redis : Reload redis ACL]" in output
        assert _cli(host, changed, "PING").stdout.strip() == "PONG"
    finally:
        rc, output = ansible_playbook(
            scenario_file("converge.yml"), tags="redis_preflight,redis_configure", timeout=300
        )
        assert rc == 0, output[-3000:]
    assert _cli(host, EXPORTER, "PING").stdout.strip() == "PONG"
    assert host.run("systemctl show -p MainPID --value redis-server").stdout.strip() == pid
    journal = host.run("journalctl --no-pager -o cat").stdout
    for _, password in (ADMIN, APP, EXPORTER, changed):
        assert password not in journal


def _playbook(extra_vars):
    return ansible_playbook(
        scenario_file("converge.yml"), extra_vars, tags="redis_preflight", timeout=300
    )


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"redis_app_password": ""},
            "redis_admin_password and redis_app_password must be set (from the vault)",
        ),
        (
            {"redis_app_commands": "+@all -@dangerous +flushall"},
            "redis_app_commands must deny @dangerous and must not grant FLUSHALL",
        ),
        (
            {"redis_appendfsync": "no"},
            "value of redis_appendfsync must be one of: always, everysec, got: no",
        ),
    ],
)
def test_bad_input_stops_in_preflight(host, extra_vars, message):
    rc, output = _playbook(extra_vars)
    assert rc != 0
    assert message in output, output[-3000:]
