"""Settings come from MORPHEUS_* variables and secret files; bad values are named clearly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from morpheus.settings import MiB, Settings, SettingsError, get_settings, load_settings

GOOD_ENV = {
    "MORPHEUS_DATABASE_URL": "postgresql://app@db.internal:5432/morpheus",
    "MORPHEUS_REDIS_URL": "redis://cache.internal:6379/1",
    "MORPHEUS_SECRET_KEY": "test-only-secret-key-0123456789abcdef",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No MORPHEUS_* variable from the outer environment, and an empty secrets dir."""
    for name in list(os.environ):
        if name.startswith("MORPHEUS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "no-secrets"
    empty.mkdir()
    monkeypatch.setenv("MORPHEUS_SECRETS_DIR", str(empty))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_reads_environment_and_applies_defaults(clean_env: pytest.MonkeyPatch) -> None:
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv("MORPHEUS_QUEUE_NAME", "comics-eu")
    clean_env.setenv("MORPHEUS_CORS_ORIGINS", "https://a.example, https://b.example")
    clean_env.setenv("MORPHEUS_LOG_LEVEL", "debug")
    settings = load_settings()
    # A plain postgresql:// URL is turned into the psycopg 3 SQLAlchemy URL.
    assert settings.database_url == "postgresql+psycopg://app@db.internal:5432/morpheus"
    assert settings.redis_url == "redis://cache.internal:6379/1"
    assert settings.queue_name == "comics-eu"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.log_level == "DEBUG"
    assert settings.secret_key.get_secret_value() == GOOD_ENV["MORPHEUS_SECRET_KEY"]
    assert settings.max_upload_bytes == 5 * MiB
    assert settings.storage_backend == "local"
    assert settings.provider == "local"
    assert settings.runpod_base_url == "https://api.runpod.ai"
    # Secrets do not show in the repr (which ends up in logs and tracebacks).
    assert GOOD_ENV["MORPHEUS_SECRET_KEY"] not in repr(settings)


def test_get_settings_is_built_once(clean_env: pytest.MonkeyPatch) -> None:
    set_env(clean_env, GOOD_ENV)
    first = get_settings()
    clean_env.setenv("MORPHEUS_QUEUE_NAME", "changed-later")
    assert get_settings() is first
    assert first.queue_name == "comics"


def test_reads_secret_files_and_environment_wins(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "morpheus_secret_key").write_text("test-only-from-a-secret-file-0123456789\n")
    (secrets / "morpheus_database_url").write_text("postgresql://from-file@db/morpheus")
    (secrets / "morpheus_runpod_api_key").write_text("test-only-runpod-key")
    clean_env.setenv("MORPHEUS_SECRETS_DIR", str(secrets))
    clean_env.setenv("MORPHEUS_REDIS_URL", GOOD_ENV["MORPHEUS_REDIS_URL"])
    clean_env.setenv("MORPHEUS_DATABASE_URL", "postgresql://from-env@db/morpheus")
    settings = load_settings()
    assert settings.secret_key.get_secret_value() == "test-only-from-a-secret-file-0123456789"
    assert settings.runpod_api_key is not None
    assert settings.runpod_api_key.get_secret_value() == "test-only-runpod-key"
    assert settings.database_url == "postgresql+psycopg://from-env@db/morpheus"


def test_missing_secrets_dir_is_named(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv("MORPHEUS_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines == [f"MORPHEUS_SECRETS_DIR: {tmp_path / 'absent'} is not a directory"]


def test_missing_settings_are_each_named(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines == [
        "MORPHEUS_DATABASE_URL: is required but not set",
        "MORPHEUS_REDIS_URL: is required but not set",
        "MORPHEUS_SECRET_KEY: is required but not set",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MORPHEUS_DATABASE_URL", "mysql://db/x", "must be a PostgreSQL URL"),
        ("MORPHEUS_REDIS_URL", "localhost:6379", "must be a Redis URL"),
        ("MORPHEUS_SECRET_KEY", "too-short", "at least 32 characters"),
        ("MORPHEUS_STORAGE_BACKEND", "ftp", "'local' or 's3'"),
        ("MORPHEUS_MAX_UPLOAD_BYTES", "lots", "valid integer"),
        ("MORPHEUS_MAX_UPLOAD_BYTES", "0", "greater than 0"),
        ("MORPHEUS_JOB_ATTEMPTS", "0", "greater than or equal to 1"),
        ("MORPHEUS_LOG_LEVEL", "loud", "'DEBUG', 'INFO'"),
        ("MORPHEUS_TRUSTED_PROXIES", "10.0.0.0/8,not-an-ip", "'not-an-ip' is not an IP"),
        ("MORPHEUS_QUEUE_NAME", "no spaces", "should match pattern"),
        (
            "MORPHEUS_DATABASE_READ_URL",
            "mysql://standby/x",
            "must be a PostgreSQL URL: postgresql+psycopg://user@host:port/db (several hosts: "
            "postgresql+psycopg://user@/db?host=HOST:PORT&host=HOST:PORT), or empty for no "
            "standby",
        ),
        ("MORPHEUS_DATABASE_READ_MAX_LAG_SECONDS", "0", "greater than 0"),
        ("MORPHEUS_DATABASE_READ_MAX_LAG_SECONDS", "-2.5", "greater than 0"),
        ("MORPHEUS_DATABASE_READ_MAX_LAG_SECONDS", "soon", "valid number"),
    ],
)
def test_invalid_setting_is_named_with_its_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert len(caught.value.lines) == 1, caught.value.lines
    line = caught.value.lines[0]
    assert line.startswith(f"{variable}: "), line
    assert expected in line
    if variable == "MORPHEUS_SECRET_KEY":
        assert value not in line  # a rejected secret is not echoed


def test_no_standby_unless_a_read_url_is_set(clean_env: pytest.MonkeyPatch) -> None:
    set_env(clean_env, GOOD_ENV)
    settings = load_settings()
    assert settings.database_read_url is None
    assert settings.database_read_max_lag_seconds == 5.0
    clean_env.setenv("MORPHEUS_DATABASE_READ_URL", "  ")
    assert load_settings().database_read_url is None
    # Written as the primary's may be: a plain postgresql:// URL is turned into psycopg 3's.
    clean_env.setenv("MORPHEUS_DATABASE_READ_URL", "postgresql://app@db.internal:6432/morpheus_ro")
    clean_env.setenv("MORPHEUS_DATABASE_READ_MAX_LAG_SECONDS", "0.5")
    settings = load_settings()
    assert settings.database_read_url == "postgresql+psycopg://app@db.internal:6432/morpheus_ro"
    assert settings.database_read_max_lag_seconds == 0.5


# Test-only password: it must never show in a message about the URL it is part of.
URL_PASSWORD = "test-only-url-pw"


@pytest.mark.parametrize("variable", ["MORPHEUS_DATABASE_URL", "MORPHEUS_DATABASE_READ_URL"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Every postgres host's PgBouncer, as the platform writes them.
        (
            f"postgresql+psycopg://app:{URL_PASSWORD}@/morpheus"
            "?host=10.0.0.4:6432&host=10.0.0.5:6432&connect_timeout=3",
            None,
        ),
        # libpq's own form, and a plain postgresql:// one, rewritten as for one host.
        (
            f"postgresql://app:{URL_PASSWORD}@/morpheus?host=10.0.0.4,10.0.0.5&port=6432,6432",
            f"postgresql+psycopg://app:{URL_PASSWORD}@/morpheus"
            "?host=10.0.0.4,10.0.0.5&port=6432,6432",
        ),
        # One host named in ?host= is one host still.
        (f"postgresql+psycopg://app:{URL_PASSWORD}@/morpheus?host=10.0.0.4:6432", None),
    ],
)
def test_a_url_of_several_hosts_is_taken_as_it_is(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, expected: str | None
) -> None:
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv(variable, value)
    settings = load_settings()
    field = "database_url" if variable == "MORPHEUS_DATABASE_URL" else "database_read_url"
    assert getattr(settings, field) == (expected or value)


@pytest.mark.parametrize("variable", ["MORPHEUS_DATABASE_URL", "MORPHEUS_DATABASE_READ_URL"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?host=10.0.0.4:6432&host=10.0.0.5:pgb", "its hosts and ports do not read"),
        ("?host=10.0.0.4,10.0.0.5&port=6432,6432,6432", "its hosts and ports do not read"),
        ("?host=10.0.0.4:6432&connect_timeout=0", "connect_timeout must be a whole number"),
        ("?host=10.0.0.4:6432&connect_timeout=soon", "connect_timeout must be a whole number"),
    ],
)
def test_a_url_whose_hosts_do_not_read_is_refused_without_echoing_it(
    clean_env: pytest.MonkeyPatch, variable: str, query: str, expected: str
) -> None:
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv(variable, f"postgresql+psycopg://app:{URL_PASSWORD}@/morpheus{query}")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (line,) = caught.value.lines
    assert line.startswith(f"{variable}: ") and expected in line, line
    assert URL_PASSWORD not in line and "10.0.0.4" not in line


def test_hosts_both_after_at_and_in_the_query_are_refused(clean_env: pytest.MonkeyPatch) -> None:
    """SQLAlchemy would drop the one after @ without a word."""
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv(
        "MORPHEUS_DATABASE_URL",
        f"postgresql+psycopg://app:{URL_PASSWORD}@10.0.0.9:6432/morpheus?host=10.0.0.4:6432",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines == [
        "MORPHEUS_DATABASE_URL: names hosts both after @ and in ?host=: give them in one place"
    ]


def test_backend_specific_settings_are_required(clean_env: pytest.MonkeyPatch) -> None:
    set_env(clean_env, GOOD_ENV)
    clean_env.setenv("MORPHEUS_STORAGE_BACKEND", "s3")
    clean_env.setenv("MORPHEUS_PROVIDER", "runpod")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (line,) = caught.value.lines
    assert "MORPHEUS_S3_BUCKET" in line
    assert "MORPHEUS_RUNPOD_ENDPOINT_ID" in line
    assert "MORPHEUS_RUNPOD_API_KEY" in line


def test_constructor_arguments_override_environment(clean_env: pytest.MonkeyPatch) -> None:
    set_env(clean_env, GOOD_ENV)
    settings = Settings(queue_name="from-code")
    assert settings.queue_name == "from-code"
    assert settings.redis_url == GOOD_ENV["MORPHEUS_REDIS_URL"]


def test_secrets_dir_defaults_to_run_secrets_only_when_present(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from morpheus import settings as settings_module

    clean_env.delenv("MORPHEUS_SECRETS_DIR")
    present = tmp_path / "run-secrets"
    present.mkdir()
    clean_env.setattr(settings_module, "DEFAULT_SECRETS_DIR", present)
    assert settings_module.resolve_secrets_dir() == present
    (present / "MORPHEUS_SECRET_KEY").write_text("test-only-default-secrets-dir-0123456789")
    set_env(clean_env, {k: v for k, v in GOOD_ENV.items() if k != "MORPHEUS_SECRET_KEY"})
    loaded = load_settings()
    assert loaded.secret_key.get_secret_value() == "test-only-default-secrets-dir-0123456789"

    clean_env.setattr(settings_module, "DEFAULT_SECRETS_DIR", tmp_path / "absent")
    assert settings_module.resolve_secrets_dir() is None
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.lines == ["MORPHEUS_SECRET_KEY: is required but not set"]
