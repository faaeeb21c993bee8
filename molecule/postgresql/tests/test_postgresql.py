"""The postgresql role: a SCRAM-only, checksummed, host-sized server."""

import json

import pytest
from conftest import ansible_playbook, scenario_file

UNIT = "postgresql@15-main"
APP_PASSWORD = "test-only-app-password"  # test-only value


def _journal(host, unit=UNIT):
    return host.run(f"journalctl -u {unit} --no-pager -n 50").stdout


def _sql(host, query, db="postgres"):
    result = host.run(f"runuser -u postgres -- psql -X -At -d {db} -c {json.dumps(query)}")
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def _private_address(host):
    return host.run("hostname -I").stdout.split()[0]


def test_service_runs(host):
    service = host.service(UNIT)
    assert service.is_running, _journal(host)
    assert service.is_enabled, _journal(host)


def test_listens_on_localhost_and_private_address_only(host):
    address = _private_address(host)
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert host.socket(f"tcp://{address}:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_data_checksums_were_enabled_on_the_existing_cluster(host):
    assert _sql(host, "SHOW data_checksums") == "on"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        # 2048 MB, 20 pooler connections: 30 connections, RAM/4, RAM*3/4,
        # (2048 - 512) / 90 = 17 MB; maintenance_work_mem overridden.
        ("max_connections", "30"),
        ("shared_buffers", "512MB"),
        ("effective_cache_size", "1536MB"),
        ("work_mem", "17MB"),
        ("maintenance_work_mem", "96MB"),
        ("password_encryption", "scram-sha-256"),
        ("log_min_duration_statement", "250ms"),
        ("max_wal_size", "2GB"),
        ("checkpoint_completion_target", "0.9"),
    ],
)
def test_settings_are_live(host, setting, expected):
    assert _sql(host, f"SHOW {setting}") == expected


def test_pg_hba_is_scram_only(host):
    methods = _sql(host, "SELECT DISTINCT auth_method FROM pg_hba_file_rules ORDER BY 1")
    assert methods.split() == ["peer", "scram-sha-256"]
    assert _sql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def test_passwords_are_stored_as_scram(host):
    stored = _sql(host, "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    assert stored.startswith("SCRAM-SHA-256$4096:")


def test_app_logs_in_over_the_private_address_with_its_password(host):
    address = _private_address(host)
    ok = host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -X -At -h {address} -U app -d morpheus "
        "-c 'SELECT current_user'"
    )
    assert ok.rc == 0, ok.stderr
    assert ok.stdout.strip() == "app"
    bad = host.run(f"PGPASSWORD=wrong psql -X -At -h {address} -U app -d morpheus -c 'SELECT 1'")
    assert bad.rc != 0
    assert "password authentication failed" in bad.stderr


def test_database_owner_and_grants(host):
    owner = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'morpheus'"
    assert _sql(host, owner) == "app"
    grant = "SELECT has_database_privilege('reader', 'morpheus', 'CONNECT')"
    assert _sql(host, grant) == "t"


def _apply_bad_vars(extra_vars):
    return ansible_playbook(
        scenario_file("bad_input.yml"), extra_vars, tags="postgresql_preflight", timeout=300
    )


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"postgresql_shared_buffers": "lots"},
            "postgresql_shared_buffers: 'lots' is not a memory size (for example 512MB or 4GB)",
        ),
        (
            {"postgresql_users": [{"name": "nopass"}]},
            "postgresql_users: no password for nopass; set each user's password (from the vault).",
        ),
        (
            {
                "postgresql_hba_entries": [
                    {"database": "all", "user": "all", "address": "samenet", "method": "md5"}
                ]
            },
            "no method other than scram-sha-256",
        ),
    ],
)
def test_bad_input_stops_in_preflight(host, extra_vars, message):
    before = _sql(host, "SELECT count(*) FROM pg_roles")
    rc, output = _apply_bad_vars(extra_vars)
    assert rc != 0, output[-3000:]
    assert message in output, output[-3000:]
    assert _sql(host, "SELECT count(*) FROM pg_roles") == before
