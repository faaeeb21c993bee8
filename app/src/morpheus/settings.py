"""Process settings: read once from the environment and secret files, validated at start.

Every field is read from an environment variable named ``MORPHEUS_<FIELD>`` (for example
``MORPHEUS_DATABASE_URL``) or from a file of the same name in the secrets directory
(``MORPHEUS_SECRETS_DIR``, default ``/run/secrets`` when it exists). Environment variables
win over secret files. A missing or invalid value stops the process with a message naming
the variable; see :func:`describe_validation_error`.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import SecretsSettingsSource

from morpheus.database_url import normalize as _postgresql_url

ENV_PREFIX = "MORPHEUS_"
SECRETS_DIR_ENV = "MORPHEUS_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
MiB = 1024 * 1024

StrList = Annotated[list[str], NoDecode]


def resolve_secrets_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The secrets directory: ``MORPHEUS_SECRETS_DIR`` if set, else /run/secrets if present."""
    env = os.environ if environ is None else environ
    configured = env.get(SECRETS_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    if DEFAULT_SECRETS_DIR.is_dir():
        return DEFAULT_SECRETS_DIR
    return None


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """All configuration of the API, the dashboard and the workers."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    # --- identity -------------------------------------------------------------------------
    environment: Literal["development", "test", "staging", "production"] = "production"
    release_id: str = Field(default="unknown", min_length=1, max_length=100)

    # --- PostgreSQL -------------------------------------------------------------------------
    # One server, or several PgBouncers tried in order (morpheus.database_url):
    # postgresql+psycopg://user:password@/dbname?host=a:6432&host=b:6432&connect_timeout=3.
    database_url: str = Field(
        description="SQLAlchemy URL, postgresql+psycopg://user:password@host:port/dbname"
    )
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int = Field(default=5, ge=0, le=100)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    # Each attempt to connect, per host; a connect_timeout in a database URL wins for it.
    db_connect_timeout_seconds: int = Field(default=5, ge=1, le=300)
    # Applied per transaction (SET LOCAL), so it is safe behind PgBouncer; 0 disables it.
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    # Schema migrations (migrations/env.py), per transaction (SET LOCAL): the longest a
    # migration waits for a table lock before it fails (it never queues the running
    # release's queries behind it for long), and the longest one statement runs. 0 disables
    # either. Read from the environment alone by migration_timeouts() as well.
    db_migration_lock_timeout_ms: int = Field(default=5_000, ge=0)
    db_migration_statement_timeout_ms: int = Field(default=300_000, ge=0)
    # A hot standby of the primary (a SQLAlchemy URL as database_url's, through its own
    # PgBouncer database) for the read-only queries that name it: the dashboard's listing
    # and the status polls. Unset or empty: every query goes to the primary. Reads go to
    # the primary instead while the standby does not answer, fails a query, or replays
    # more than database_read_max_lag_seconds behind it (morpheus.db.standby). Its pool
    # has the primary's size and timeouts.
    database_read_url: str | None = None
    database_read_max_lag_seconds: float = Field(default=5.0, gt=0)

    # --- Redis / queue ----------------------------------------------------------------------
    redis_url: str = Field(description="redis://[:password@]host:port/db")
    queue_name: str = Field(default="comics", min_length=1, max_length=100, pattern=r"^[\w.-]+$")

    # --- storage --------------------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    storage_path: Path = Path("/var/lib/morpheus/storage")
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"

    # --- panel provider -------------------------------------------------------------------
    provider: Literal["local", "runpod"] = "local"
    # The local provider's drawing time per panel, at least: a pause before each panel it
    # draws, so that a platform without a GPU behaves like one whose panels take time
    # (deploy drills, load tests). 0: as fast as it draws.
    local_panel_seconds: float = Field(default=0.0, ge=0, le=30)
    runpod_base_url: str = "https://api.runpod.ai"
    runpod_endpoint_id: str | None = None
    runpod_api_key: SecretStr | None = None

    # --- HTTP -----------------------------------------------------------------------------
    max_upload_bytes: int = Field(default=5 * MiB, gt=0)
    storefront_host: str = "morpheus.localhost"
    dashboard_host: str = "dashboard.morpheus.localhost"
    api_host: str = "api.morpheus.localhost"
    cors_origins: StrList = Field(default_factory=list)
    trusted_proxies: StrList = Field(default_factory=lambda: ["127.0.0.1"])
    secret_key: SecretStr = Field(description="signs dashboard sessions, at least 32 characters")

    # --- reading novels (see morpheus.pipeline.ingest and morpheus.services.extraction) -
    # The longest novel accepted, in characters of text, whatever the format.
    max_text_chars: int = Field(default=5_000_000, gt=0)
    # An EPUB's members may unpack to this much in all, and each to this much; checked
    # against the ZIP's directory and again while decompressing. Over either: 413.
    epub_max_unpacked_bytes: int = Field(default=32 * MiB, gt=0)
    epub_max_member_bytes: int = Field(default=16 * MiB, gt=0)
    # A member (of more than 1 MiB) compressed more than this many times: refused (422).
    epub_max_compression_ratio: float = Field(default=100.0, gt=1)
    # A novel is read in a child process, killed (422) after this long.
    ingest_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    # Address space the child may add to what it starts with; 0 sets no such limit.
    ingest_memory_bytes: int = Field(default=512 * MiB, ge=0)
    # Novels read at once by one web worker process; others wait for a turn.
    ingest_concurrency: int = Field(default=2, ge=1, le=64)

    # --- observability --------------------------------------------------------------------
    sentry_dsn: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # --- jobs -----------------------------------------------------------------------------
    job_timeout_seconds: float = Field(default=600.0, gt=0)
    job_attempts: int = Field(default=3, ge=1, le=50)
    job_backoff_seconds: float = Field(default=5.0, ge=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # --- worker -----------------------------------------------------------------------------
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    # Prometheus /metrics of the worker process; port 0 turns it off.
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # BullMQ job lock and stalled-job check: a dead worker's job runs again after about
    # lock + stalled interval; a job that stalls more than max_stalled_count times fails.
    worker_lock_seconds: float = Field(default=30.0, gt=0)
    worker_stalled_interval_seconds: float = Field(default=30.0, gt=0)
    worker_max_stalled_count: int = Field(default=1, ge=0, le=100)
    # How often a worker refreshes its liveness key (which expires after three beats).
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)

    # --- reconciler (morpheus.worker.reconciler) ---------------------------------------------
    # PostgreSQL says which comics must run; the reconciler queues again those whose job
    # Redis lost. Every interval one worker (a Redis lock) makes a pass; 0: no periodic
    # pass (`morpheus reconcile` still makes one).
    reconciler_interval_seconds: float = Field(default=60.0, ge=0)
    # Comics queued again at most per pass (candidates are read in pages of this size).
    reconciler_batch_size: int = Field(default=100, ge=1, le=10_000)
    # A queued comic changed less than this long ago is left alone: its submission (or
    # retry) may still be queueing it.
    reconciler_grace_seconds: float = Field(default=60.0, ge=0)
    # A running comic runs again only when its progress has not moved for this long:
    # longer than a job's timeout and a dead worker's lock plus stalled check, so that no
    # attempt can still be at work on it. Unset: those plus five minutes (960 s with the
    # defaults); see reconciler_stall_bound.
    reconciler_stall_seconds: float | None = Field(default=None, gt=0)
    # Test-only: a pause before each panel is drawn, so tests can stop a worker in the middle
    # of a job without a huge novel. Honoured only when ENVIRONMENT is test or development.
    test_panel_delay_seconds: float = Field(default=0.0, ge=0, le=10)

    # --- rate limits ----------------------------------------------------------------------
    rate_limit_enabled: bool = True
    rate_limit_requests_per_minute: int = Field(default=120, ge=1)
    rate_limit_submissions_per_hour: int = Field(default=20, ge=1)

    # --- validators -----------------------------------------------------------------------
    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value: Any) -> Any:
        return _postgresql_url(value) if isinstance(value, str) else value

    @field_validator("database_read_url", mode="before")
    @classmethod
    def _database_read_url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        try:
            return _postgresql_url(value)
        except ValueError as exc:
            raise ValueError(f"{exc}, or empty for no standby") from None

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if not value.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("must be a Redis URL: redis://host:port/db")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters long")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return value

    @model_validator(mode="after")
    def _backends_complete(self) -> Self:
        missing: list[str] = []
        if self.storage_backend == "s3" and not self.s3_bucket:
            missing.append(f"{ENV_PREFIX}S3_BUCKET (required when STORAGE_BACKEND is s3)")
        if self.provider == "runpod":
            if not self.runpod_endpoint_id:
                missing.append(f"{ENV_PREFIX}RUNPOD_ENDPOINT_ID (required when PROVIDER is runpod)")
            if self.runpod_api_key is None:
                missing.append(f"{ENV_PREFIX}RUNPOD_API_KEY (required when PROVIDER is runpod)")
        if missing:
            raise ValueError("missing: " + "; ".join(missing))
        return self

    @property
    def reconciler_stall_bound(self) -> float:
        """Seconds without progress after which a running comic may be queued again."""
        if self.reconciler_stall_seconds is not None:
            return self.reconciler_stall_seconds
        return (
            self.job_timeout_seconds
            + self.worker_lock_seconds
            + self.worker_stalled_interval_seconds
            + 300.0
        )

    @model_validator(mode="after")
    def _reconciler_stall_bound(self) -> Self:
        bound = max(
            self.job_timeout_seconds,
            self.worker_lock_seconds + self.worker_stalled_interval_seconds,
            3 * self.worker_heartbeat_seconds,
        )
        if self.reconciler_stall_seconds is not None and self.reconciler_stall_seconds <= bound:
            raise ValueError(
                f"{ENV_PREFIX}RECONCILER_STALL_SECONDS must be longer than "
                f"{ENV_PREFIX}JOB_TIMEOUT_SECONDS, the worker lock plus the stalled-job "
                f"interval, and three heartbeats ({bound:g} s), so that a comic a live "
                "worker is still making is never queued again"
            )
        return self

    # --- sources --------------------------------------------------------------------------
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets = file_secret_settings
        if isinstance(secrets, SecretsSettingsSource) and secrets.secrets_dir is None:
            secrets = SecretsSettingsSource(settings_cls, secrets_dir=resolve_secrets_dir())
        return (init_settings, env_settings, secrets)


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    return f"{ENV_PREFIX}{field.upper()}"


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per bad setting, naming its environment variable, never echoing values."""
    lines: list[str] = []
    for item in error.errors(include_url=False, include_input=False):
        location = item.get("loc") or ()
        field = str(location[0]) if location else ""
        message = str(item.get("msg", "invalid value"))
        if item.get("type") == "missing":
            message = "is required but not set"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if field:
            lines.append(f"{env_name(field)}: {message}")
        else:
            lines.append(f"settings: {message}")
    return lines


class SettingsError(Exception):
    """The settings are missing or invalid; ``lines`` names each bad variable."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("invalid settings: " + "; ".join(lines))
        self.lines = lines


def load_settings(**overrides: Any) -> Settings:
    """Build and validate settings, turning a validation error into a :class:`SettingsError`."""
    secrets_dir = resolve_secrets_dir()
    if "_secrets_dir" not in overrides and secrets_dir is not None and not secrets_dir.is_dir():
        raise SettingsError([f"{SECRETS_DIR_ENV}: {secrets_dir} is not a directory"])
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


MIGRATION_TIMEOUT_FIELDS = ("db_migration_lock_timeout_ms", "db_migration_statement_timeout_ms")


def migration_timeouts(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(lock, statement) timeouts of schema migrations in milliseconds, from their
    ``MORPHEUS_DB_MIGRATION_*`` variables or the defaults, read without the other settings:
    a migration run with a database URL alone (Alembic's own command, the tests) honours them
    too. An invalid value raises :class:`SettingsError` naming its variable."""
    env = os.environ if environ is None else environ
    given = {name.upper(): value for name, value in env.items()}
    values: list[int] = []
    lines: list[str] = []
    for field in MIGRATION_TIMEOUT_FIELDS:
        info = Settings.model_fields[field]
        raw = given.get(env_name(field).upper(), "").strip()
        if not raw:
            values.append(int(info.default))
            continue
        try:
            values.append(TypeAdapter(Annotated[int, *info.metadata]).validate_python(raw))
        except ValidationError as exc:
            lines.append(f"{env_name(field)}: {exc.errors(include_url=False)[0]['msg']}")
    if lines:
        raise SettingsError(lines)
    return values[0], values[1]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built once."""
    return load_settings()
