"""A streaming hot standby of the machine's PostgreSQL, for the tests of reads on it.

``pg_basebackup -R`` copies the cluster the tests use into a temporary directory, and
the copy runs as a standby on a free port of 127.0.0.1, replaying what the primary
writes (every database of it, the test session's among them). Tests stop and start it,
pause and resume its replay. The server binaries are those of the primary's major version
(``/usr/lib/postgresql/<major>/bin``); they run as the postgres user when the tests run
as root. :class:`StandbyUnavailable` says why a standby could not be made.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

PG_LIB = Path("/usr/lib/postgresql")
# Settings a hot standby must have at least as high as its primary's.
PRIMARY_BOUNDS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
COMMAND_TIMEOUT_SECONDS = 60


class StandbyUnavailable(Exception):
    """No standby can be made on this machine; the message says why."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


@dataclass
class HotStandby:
    """A standby of the primary at ``primary_url`` (a libpq URL of a superuser)."""

    primary_url: str
    directory: Path
    bin_dir: Path
    port: int
    user: str | None

    @classmethod
    def create(cls, primary_url: str) -> HotStandby:
        """Copy the primary and start the copy as its standby, streaming."""
        try:
            with psycopg.connect(primary_url, autocommit=True, connect_timeout=10) as conn:
                version = int(conn.execute("SHOW server_version_num").fetchone()[0])
                bounds = {
                    name: conn.execute(f"SHOW {name}").fetchone()[0] for name in PRIMARY_BOUNDS
                }
        except psycopg.Error as exc:
            raise StandbyUnavailable(f"the primary does not answer: {exc}") from exc
        bin_dir = PG_LIB / str(version // 10000) / "bin"
        if not (bin_dir / "pg_basebackup").exists():
            raise StandbyUnavailable(f"no PostgreSQL server binaries in {bin_dir}")
        user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                user = pwd.getpwnam("postgres").pw_name
            except KeyError:
                raise StandbyUnavailable("running as root and there is no postgres user") from None
        directory = Path(tempfile.mkdtemp(prefix="morpheus-standby-"))
        if user is not None:
            shutil.chown(directory, user=user)
        standby = cls(primary_url, directory, bin_dir, _free_port(), user)
        try:
            standby._copy(bounds)
            standby.start()
        except BaseException:
            standby.remove()
            raise
        return standby

    # --- the server ---------------------------------------------------------------------

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )

    def _copy(self, bounds: dict[str, str]) -> None:
        # A fast checkpoint: the copy starts at once, not at the next spread checkpoint.
        copied = self._run(
            "pg_basebackup",
            "--dbname",
            self.primary_url,
            "--pgdata",
            str(self.data),
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        if copied.returncode != 0:
            hint = ""
            if "pg_hba.conf" in copied.stderr:
                hint = " (the primary takes no replication connection from here: `make setup`)"
            raise StandbyUnavailable(f"pg_basebackup failed{hint}: {copied.stderr.strip()}")
        # Debian keeps the configuration out of the data directory: the copy has none.
        # (Its address is given when it starts, over what the primary's ALTER SYSTEM says.)
        settings = {
            "hot_standby": "on",
            "fsync": "off",
            "shared_buffers": "'32MB'",
            **bounds,
        }
        files = {
            "postgresql.conf": "".join(f"{key} = {value}\n" for key, value in settings.items()),
            "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            "pg_ident.conf": "",
        }
        for name, text in files.items():
            path = self.data / name
            path.write_text(text)
            if self.user is not None:
                shutil.chown(path, user=self.user)

    def start(self) -> None:
        """Start the standby and wait until it streams from the primary."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory}"
        started = self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
        )
        assert started.returncode == 0, f"the standby did not start:\n{self.log_tail()}"
        _wait("the standby streams from the primary", self._streaming, 30)

    def stop(self) -> None:
        stopped = self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        assert stopped.returncode == 0, f"the standby did not stop:\n{self.log_tail()}"

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- asking it ----------------------------------------------------------------------

    def url(self, database_url: str) -> str:
        """``database_url`` (a SQLAlchemy URL of the primary), on the standby."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def _libpq_url(self, database: str = "postgres") -> str:
        url = make_url(self.primary_url).set(host="127.0.0.1", port=self.port, database=database)
        return url.render_as_string(hide_password=False)

    def query(self, statement: str, *params: object, database: str = "postgres") -> object:
        """The first column of the first row ``statement`` answers on the standby."""
        with psycopg.connect(self._libpq_url(database), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(statement, params).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]

    def _streaming(self) -> bool:
        try:
            return self.query("SELECT status FROM pg_stat_wal_receiver") == "streaming"
        except psycopg.OperationalError:
            return False

    # --- its replay ---------------------------------------------------------------------

    def pause_replay(self) -> None:
        """Stop replaying (the standby still receives WAL, and its lag grows)."""
        self.query("SELECT pg_wal_replay_pause()")
        _wait(
            "the replay pauses",
            lambda: self.query("SELECT pg_get_wal_replay_pause_state()") == "paused",
            10,
        )

    def resume_replay(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def catch_up(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed all the primary has written so far."""
        with psycopg.connect(self.primary_url, autocommit=True, connect_timeout=10) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        _wait(
            "the standby catches up",
            lambda: self.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target) is True,
            timeout,
        )
