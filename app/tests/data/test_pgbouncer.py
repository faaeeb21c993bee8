"""Our engine, migrations and repository work through a real PgBouncer 1.18 in transaction
pooling mode, where server-side prepared statements break (PgBouncer gained support for
them only in 1.21). The control test shows such a break does happen through this same
PgBouncer, so the other tests would notice if our engine started preparing statements.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from morpheus.db import comics, schema
from morpheus.db.session import database_unavailable, make_engine, make_sessionmaker
from several_hosts import dead_host, several_hosts
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# Few server connections for many clients: each transaction can land on any of them.
SERVER_POOL_SIZE = 2
# A database reached through a Link, which a test can cut as a server restart would.
LINKED_DATABASE = "linked"

pytestmark = pytest.mark.slow


class Link:
    """A TCP relay to the test server that can be cut, as a restarting server cuts its
    connections and then hangs up on new ones before they log in."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.is_cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if self.is_cut.is_set():
                threading.Thread(target=self._refuse, args=(client,), daemon=True).start()
                continue
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _refuse(client: socket.socket) -> None:
        """Answer the startup message as PostgreSQL does while it starts up."""
        with client, contextlib.suppress(OSError):
            client.recv(65536)
            fields = b"".join(
                kind + text + b"\0"
                for kind, text in (
                    (b"S", b"FATAL"),
                    (b"V", b"FATAL"),
                    (b"C", b"57P03"),
                    (b"M", b"the database system is starting up"),
                )
            )
            body = fields + b"\0"
            client.sendall(b"E" + (len(body) + 4).to_bytes(4, "big") + body)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.is_cut.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class Bouncer:
    host: str
    port: int
    user: str
    log: Path
    link: Link

    def libpq_url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_user() -> str | None:
    """PgBouncer refuses to run as root: then it drops to the postgres (or nobody) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.fail("running as root and neither a postgres nor a nobody user exists")


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Bouncer]:
    if not Path(PGBOUNCER).exists():
        pytest.skip(f"pgbouncer binary not found at {PGBOUNCER}")
    # PgBouncer sits in front of the server (and role) the test databases live on.
    admin = make_url(database_url)
    server_host = admin.host or "127.0.0.1"
    server_port = admin.port or 5432
    user = admin.username or "postgres"
    password = admin.password or ""

    link = Link(server_host, server_port)
    workdir = tmp_path_factory.mktemp("pgbouncer")
    workdir.chmod(0o755)
    port = _free_port()
    # PgBouncer logs to stderr, which goes to this file (opened here, before it drops root).
    log = workdir / "pgbouncer.log"
    userlist = workdir / "userlist.txt"
    userlist.write_text(f'"{user}" "{password}"\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"{LINKED_DATABASE} = host=127.0.0.1 port={link.port} dbname=postgres",
                f"* = host={server_host} port={server_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {userlist}",
                "pool_mode = transaction",
                f"default_pool_size = {SERVER_POOL_SIZE}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                "max_client_conn = 200",
                "server_reset_query =",
                "query_wait_timeout = 30",
                "ignore_startup_parameters = extra_float_digits",
                "",
            ]
        )
    )
    for path in (userlist, config):
        path.chmod(0o644)

    command = [PGBOUNCER, str(config)]
    run_as = _run_as_user()
    if run_as:
        command[1:1] = ["-u", run_as]
    # Output goes to a file: a pipe nobody reads would fill up and stall PgBouncer.
    console = log.open("wb")
    process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    try:
        while True:
            if process.poll() is not None:
                output = log.read_text(errors="replace")
                pytest.fail(f"pgbouncer exited with {process.returncode}:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not listen on {port}:\n{log.read_text()}")
                time.sleep(0.1)
        yield Bouncer(host="127.0.0.1", port=port, user=user, log=log, link=link)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        console.close()


@pytest.fixture
def bounced_database(pgbouncer: Bouncer, empty_database_url: str) -> str:
    """The name of an empty database, reached through PgBouncer."""
    name = make_url(empty_database_url).database
    assert name is not None
    return name


def _hammer(worker_count: int, rounds: int, work: object) -> list[BaseException]:
    """Run ``work(worker_index, round)`` from several threads at once; collect errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(worker_count)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            for round_number in range(rounds):
                work(index, round_number)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(worker_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "workers did not finish"
    return errors


def test_control_prepared_statements_fail_through_transaction_pooling(
    pgbouncer: Bouncer, bounced_database: str
) -> None:
    """psycopg preparing every statement (prepare_threshold=0) breaks through PgBouncer."""
    url = pgbouncer.libpq_url(bounced_database)
    connections = [
        psycopg.connect(url, autocommit=True, prepare_threshold=0, connect_timeout=10)
        for _ in range(SERVER_POOL_SIZE * 3)
    ]
    failures: list[psycopg.Error] = []
    try:
        for round_number in range(10):
            for conn in connections:
                try:
                    conn.execute("SELECT %s::int + 1", (round_number,)).fetchone()
                except (
                    psycopg.errors.DuplicatePreparedStatement,
                    psycopg.errors.InvalidSqlStatementName,
                ) as exc:
                    failures.append(exc)
    finally:
        for conn in connections:
            conn.close()
    assert failures, "expected prepared-statement errors through PgBouncer; none happened"
    assert any("prepared statement" in str(exc) for exc in failures)


def test_migrations_run_through_pgbouncer(pgbouncer: Bouncer, bounced_database: str) -> None:
    url = pgbouncer.sqlalchemy_url(bounced_database)
    schema.upgrade(url)
    assert schema.current_revision(url) == schema.head_revision()
    schema.downgrade(url, "base")
    assert schema.current_revision(url) is None
    schema.upgrade(url)
    assert schema.current_revision(url) == schema.head_revision()


def test_migrations_and_the_engine_reach_pgbouncer_past_a_dead_first_host(
    pgbouncer: Bouncer, bounced_database: str
) -> None:
    """As the service's URL names every postgres host's PgBouncer, the primary's first:
    with that host gone, the next PgBouncer answers."""
    with dead_host("silent") as dead:
        url = several_hosts(pgbouncer.sqlalchemy_url(bounced_database), dead.address)
        schema.upgrade(url)
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT current_database()")).scalar_one() == (
                    bounced_database
                )
        finally:
            engine.dispose()
    assert schema.current_revision(pgbouncer.sqlalchemy_url(bounced_database)) == (
        schema.head_revision()
    )


def test_engine_repeats_statements_across_connections_without_errors(
    pgbouncer: Bouncer, bounced_database: str
) -> None:
    """The same statements, many times, from more clients than server connections."""
    url = pgbouncer.sqlalchemy_url(bounced_database)
    schema.upgrade(url)
    workers = SERVER_POOL_SIZE * 3
    engine = make_engine(url, pool_size=workers, max_overflow=0, statement_timeout_ms=5000)
    factory = make_sessionmaker(engine)
    try:
        comic_ids: list[uuid.UUID] = []
        with factory() as session:
            for _ in range(workers):
                comic = comics.create_comic(session, title="Bounced", source_text="a b c")
                comic_ids.append(comics.start_comic(session, comic.id).id)

        def work(index: int, round_number: int) -> None:
            comic_id = comic_ids[index]
            # One client connection, many transactions: psycopg would prepare the repeated
            # statement after a few runs, and the next transaction may get another server.
            with engine.connect() as conn:
                for repeat in range(10):
                    number = round_number * 10 + repeat
                    value = conn.execute(text("SELECT CAST(:n AS int) + 1"), {"n": number})
                    assert value.scalar_one() == number + 1
                    # The statement timeout is per transaction: set in each one.
                    shown = conn.execute(text("SHOW statement_timeout")).scalar_one()
                    assert shown == "5s"
                    conn.commit()
            with factory() as session:
                comics.set_stage(session, comic_id, "render", round_number / 20)
                comics.record_timing(session, comic_id, "render", float(round_number))
                comics.upsert_page(session, comic_id, round_number % 5, "k", 10, 10)
                assert comics.get_comic(session, comic_id) is not None
                comics.list_pages(session, comic_id)

        errors = _hammer(workers, 20, work)
        assert errors == [], errors[:3]

        with factory() as session:
            for comic_id in comic_ids:
                pages = comics.list_pages(session, comic_id)
                assert [page.number for page in pages] == [0, 1, 2, 3, 4]
                done = comics.complete_comic(session, comic_id, page_count=len(pages))
                assert done.status == "completed"
                assert done.timings == {"render": 19.0}
    finally:
        engine.dispose()
    # A session-level setting never leaked to another client through a shared server.
    with psycopg.connect(
        pgbouncer.libpq_url(bounced_database), autocommit=True, prepare_threshold=None
    ) as conn:
        row = conn.execute("SHOW statement_timeout").fetchone()
        assert row is not None and row[0] == "0"


def _query_quietly(url: str) -> None:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, prepare_threshold=None) as conn:
        conn.execute("SELECT 1")


def test_a_server_that_goes_away_behind_pgbouncer_is_unavailable_not_broken(
    pgbouncer: Bouncer,
) -> None:
    """PostgreSQL goes away behind PgBouncer (as while it restarts). PgBouncer, which has
    met the server before, still lets the client in, and the transaction's first
    statement, the statement timeout's, meets the error. It reaches the caller as an
    OperationalError, which the service answers with a 503, not as an unknown error."""
    engine = make_engine(
        pgbouncer.sqlalchemy_url(LINKED_DATABASE),
        pool_size=1,
        max_overflow=0,
        statement_timeout_ms=5000,
    )
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        failures_before = pgbouncer.log.read_text().count("login failed")
        pgbouncer.link.cut()
        engine.dispose()  # new client connections: PgBouncer admits them from memory
        # A first client sets PgBouncer trying the server (it then waits for up to
        # query_wait_timeout); from the first failed login on, PgBouncer refuses the
        # next ones at once: "server login has been failing" (server_login_retry).
        threading.Thread(
            target=_query_quietly, args=(pgbouncer.libpq_url(LINKED_DATABASE),), daemon=True
        ).start()
        deadline = time.monotonic() + 10
        while pgbouncer.log.read_text().count("login failed") == failures_before:
            assert time.monotonic() < deadline, "PgBouncer never tried the server"
            time.sleep(0.05)
        for _ in range(3):
            with pytest.raises(OperationalError) as caught, engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            assert isinstance(caught.value.orig, psycopg.OperationalError), repr(caught.value)
            assert database_unavailable(caught.value), repr(caught.value)
    finally:
        engine.dispose()
