"""The service's PostgreSQL URLs: one server, or several PgBouncers tried in order.

``MORPHEUS_DATABASE_URL`` and ``MORPHEUS_DATABASE_READ_URL`` name one server,
``postgresql+psycopg://user:password@host:port/db``, or several hosts as SQLAlchemy's
PostgreSQL dialects take them, ``postgresql+psycopg://user:password@/db?host=a:6432&host=b:6432``
(libpq's own ``?host=a,b&port=6432,6432`` too). psycopg tries the hosts in the order given and
keeps the first that lets it in; each attempt is bounded by ``connect_timeout`` (never below
:data:`MIN_ATTEMPT_SECONDS`), so a host that is down costs a new connection at most that
much: almost nothing when its port is refused, the whole timeout when it does not answer.
A ``connect_timeout`` in the URL wins over ``MORPHEUS_DB_CONNECT_TIMEOUT_SECONDS``, so that
whatever reads the URL alone (Alembic, the migrations) honours it too.

A URL is read here as SQLAlchemy's psycopg dialect reads it before it hands the parameters
to psycopg, and no message ever names any part of it: it holds a password.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

SCHEME = "postgresql+psycopg://"
FORMS = (
    "postgresql+psycopg://user@host:port/db "
    "(several hosts: postgresql+psycopg://user@/db?host=HOST:PORT&host=HOST:PORT)"
)
# psycopg gives each attempt at least this long, whatever connect_timeout says.
MIN_ATTEMPT_SECONDS = 2

_DIALECT = PGDialect_psycopg()


@dataclass(frozen=True)
class Endpoints:
    """Where a URL's connections go: its hosts in the order psycopg tries them (each
    ``host:port``, or ``host`` alone for libpq's default port; an empty host is libpq's
    default, the local socket), and the URL's own ``connect_timeout`` (None: it gives none)."""

    hosts: tuple[str, ...]
    connect_timeout: int | None

    def attempt_seconds(self, default_timeout: int) -> int:
        """The longest one attempt takes: the URL's timeout, else ``default_timeout``."""
        return max(MIN_ATTEMPT_SECONDS, self.connect_timeout or default_timeout)

    def fallback_seconds(self, default_timeout: int) -> int:
        """The longest a new connection spends on hosts before the last: one whole attempt
        for each (0 for a single host)."""
        return (len(self.hosts) - 1) * self.attempt_seconds(default_timeout)


def endpoints(url: str | URL) -> Endpoints:
    """The hosts and timeout of ``url``; ``ValueError`` (naming no part of it) when SQLAlchemy
    or psycopg could not read them."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(f"is not a URL SQLAlchemy can read: {FORMS}") from None
    if parsed.host and "host" in parsed.query:
        raise ValueError("names hosts both after @ and in ?host=: give them in one place")
    try:
        _, params = _DIALECT.create_connect_args(parsed)
    except (ArgumentError, ValueError):
        raise ValueError(
            "its hosts and ports do not read: give ?host=HOST:PORT once for each host"
        ) from None
    hosts = str(params.get("host") or "").split(",")
    ports = str(params.get("port") or "").split(",")
    if ports == [""]:  # no port: libpq's default for every host
        ports *= len(hosts)
    return Endpoints(
        hosts=tuple(
            f"{host}:{port}" if port else host for host, port in zip(hosts, ports, strict=True)
        ),
        connect_timeout=_timeout(params.get("connect_timeout")),
    )


def _timeout(value: object) -> int | None:
    if value is None:
        return None
    try:
        seconds = int(str(value))
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ValueError("its connect_timeout must be a whole number of seconds, at least 1")
    return seconds


def normalize(value: str) -> str:
    """``value`` as a psycopg 3 SQLAlchemy URL (``postgres://`` and ``postgresql://`` are
    rewritten), checked as :func:`endpoints` reads it; ``ValueError`` otherwise."""
    raw = value.strip()
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            raw = SCHEME + raw[len(prefix) :]
    if not raw.startswith(SCHEME):
        raise ValueError(f"must be a PostgreSQL URL: {FORMS}")
    endpoints(raw)
    return raw
