"""Database URLs of several hosts whose first is dead, for the tests of the fallback.

The platform names every postgres host's PgBouncer in the service's URLs, the primary's
first; psycopg tries them in turn. A host is dead in one of two ways here, both on
127.0.0.1 so that nothing leaves the machine:

- ``refused``: a port nobody listens on, as a host that is up without its PgBouncer: the
  attempt fails at once;
- ``silent``: a listener whose queue of connections is full, so that the kernel drops each
  new connection's SYN, as a host that is gone drops it: the attempt lasts until
  ``connect_timeout``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url

DEAD_KINDS = ("refused", "silent")
# psycopg's shortest attempt: the tests wait for a silent host no longer than they must.
CONNECT_TIMEOUT = 2
# Test-only password, in the URLs the tests build: no log line or message may show it.
TEST_URL_PASSWORD = "test-only-db-url-password-5b1e"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    """True when a TCP connection to ``port`` completes within half a second."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class DeadHost:
    kind: str
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def dead_host(kind: str) -> Iterator[DeadHost]:
    """A dead host of the given kind, for as long as the context lasts."""
    if kind == "refused":
        yield DeadHost(kind, _free_port())
        return
    assert kind == "silent", kind
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        # Connections nobody accepts fill the queue; then new ones get no answer at all.
        for _ in range(16):
            if not _answers(port):
                break
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        else:
            raise AssertionError("the listener's queue did not fill: it still answers")
        yield DeadHost(kind, port)


def several_hosts(
    url: str,
    *first: str,
    password: str | None = TEST_URL_PASSWORD,
    connect_timeout: int | None = CONNECT_TIMEOUT,
) -> str:
    """``url`` (one server) as a URL of several hosts, as the platform writes them:
    ``first`` (``host:port`` each), then the server of ``url``; with ``password``, which
    the test servers (trust) do not ask for."""
    parsed = make_url(url)
    server = f"{parsed.host or '127.0.0.1'}:{parsed.port or 5432}"
    query: dict[str, str | tuple[str, ...]] = {"host": (*first, server)}
    if connect_timeout is not None:
        query["connect_timeout"] = str(connect_timeout)
    several = URL.create(
        parsed.drivername,
        username=parsed.username,
        password=password,
        database=parsed.database,
        query=query,
    )
    return several.render_as_string(hide_password=False)
