"""Read-only queries on the hot standby, with the primary to fall back on.

A use case that only reads, and may show what the primary held a few seconds ago, runs its
read through :meth:`ReadRouter.run`, which names the choice where it is made; every other
query goes to the primary as before. A read goes to the standby while the standby is
healthy: it answers, and replays at most ``database_read_max_lag_seconds`` behind the
primary. Else it goes to the primary, for one of these reasons:

- ``unreachable``: the standby does not answer (refused, dropped, out of pooled
  connections, shutting down);
- ``lag``: its replay is further behind than the bound, or by how much cannot be told;
- ``error``: a read failed on it with another error (a query cancelled by a conflict with
  recovery, a column the standby has not replayed yet);
- ``not_found``: the standby's answer says that something is missing (a comic submitted a
  moment ago may not be replayed yet), and the primary's answer is the one given, so that
  a reader never gets a 404 the primary would not give.

A read that fails on the standby runs once on the primary, and the standby counts as
unhealthy until its state is measured again. Its state (health and lag) is measured at
most once every :data:`STATE_TTL_SECONDS` per process, by the first read past that time;
reads arriving while it is measured use the state measured before. The lag is measured on
the standby: 0 while it has replayed all the WAL it received and still receives WAL (an
idle primary sends nothing, and that is no lag); else the age of the last transaction it
replayed. A standby cut off from its primary thus shows lag growing with time, and a
server that is not in recovery (a promoted standby) has none.

Every transaction of these reads is read-only (``BEGIN READ ONLY``), on the standby as on
the primary in its stead: a write among them fails wherever it goes, and is not run again
on the primary, so that the mistake shows.

Each change of state is logged once; reads are counted in ``morpheus_db_reads_total``
(by the server that answered), fallbacks in ``morpheus_db_read_fallbacks_total`` (by
reason), the lag last measured in ``morpheus_db_standby_lag_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from morpheus.db.session import is_disconnect, make_sessionmaker, read_only, retry_on_disconnect

T = TypeVar("T")

log = structlog.stdlib.get_logger("morpheus.db")

# How long a measured state of the standby holds in a process.
STATE_TTL_SECONDS = 1.0
# The SQLSTATE of a write in a read-only transaction (and of one on a hot standby).
READ_ONLY_SQL_TRANSACTION = "25006"

Target = Literal["standby", "primary"]
Reason = Literal["unreachable", "lag", "error", "not_found"]
TARGETS: tuple[Target, ...] = ("standby", "primary")
REASONS: tuple[Reason, ...] = ("unreachable", "lag", "error", "not_found")

READS = Counter(
    "morpheus_db_reads_total",
    "Reads the hot standby may answer, by the server that answered: standby or primary.",
    ["target"],
)
READ_FALLBACKS = Counter(
    "morpheus_db_read_fallbacks_total",
    "Reads the primary answered in the hot standby's stead, by reason: unreachable, lag, "
    "error, not_found.",
    ["reason"],
)
STANDBY_LAG = Gauge(
    "morpheus_db_standby_lag_seconds",
    "The hot standby's replay lag behind the primary, as this process last measured it.",
    multiprocess_mode="livemostrecent",
)
for _target in TARGETS:
    READS.labels(_target)
for _reason in REASONS:
    READ_FALLBACKS.labels(_reason)

LAG_QUERY = text(
    """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
            AND EXISTS (SELECT FROM pg_stat_wal_receiver) THEN 0
        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
    END
    """
)


@dataclass(frozen=True)
class StandbyState:
    """The standby as last measured (or as a failed read found it)."""

    usable: bool
    # Why reads go to the primary instead: unreachable, lag or error; None when usable.
    reason: Reason | None
    # Seconds of replay lag; None when it could not be told.
    lag_seconds: float | None
    # When, on the router's clock (time.monotonic).
    checked_at: float


def failure_reason(exc: BaseException) -> Reason:
    """``unreachable`` for a server that cannot be reached or dropped the connection (no
    SQLSTATE, a connection exception, a server shutting down or starting up), else ``error``."""
    if isinstance(exc, PoolTimeoutError) or is_disconnect(exc):
        return "unreachable"
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if sqlstate is None or sqlstate.startswith(("08", "57P")):
        return "unreachable"
    return "error"


def is_read_only_violation(exc: BaseException) -> bool:
    """True for a write refused because the transaction was read-only: a program error."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == READ_ONLY_SQL_TRANSACTION


class ReadRouter:
    """Read-only work for the hot standby while it is healthy, for the primary otherwise.

    ``primary`` and ``standby`` are the two servers' engines; the router reads through
    read-only sessions of each, and disposes the standby's engine in :meth:`close`.
    ``standby`` None: there is none, every read goes to the primary. Thread-safe: reads
    run in the server's thread pool.
    """

    def __init__(
        self,
        primary: Engine,
        standby: Engine | None = None,
        *,
        max_lag_seconds: float = 5.0,
        state_ttl: float = STATE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_lag_seconds <= 0:
            raise ValueError("max_lag_seconds must be positive")
        self.primary = make_sessionmaker(read_only(primary))
        self.standby_engine = standby
        self.standby = make_sessionmaker(read_only(standby)) if standby is not None else None
        self.max_lag_seconds = max_lag_seconds
        self._ttl = state_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._state: StandbyState | None = None
        self._measuring = False

    @property
    def has_standby(self) -> bool:
        return self.standby is not None

    def run(self, read: Callable[[Session], T], *, missing: Callable[[T], bool] | None = None) -> T:
        """``read(session)``, one read-only unit of work, on the standby when it is healthy,
        else on the primary. When ``missing(answer)`` is true of the standby's answer, the
        primary is asked too and its answer returned."""
        if self.standby is None:
            return self._on_primary(read)
        state = self.state()
        if not state.usable:
            assert state.reason is not None
            return self._on_primary(read, state.reason)
        try:
            answer = self._in_session(self.standby, read)
        except (DBAPIError, PoolTimeoutError) as exc:
            if is_read_only_violation(exc):
                raise
            reason = failure_reason(exc)
            self._settle(StandbyState(False, reason, state.lag_seconds, self._clock()), exc)
            return self._on_primary(read, reason)
        if missing is not None and missing(answer):
            return self._on_primary(read, "not_found")
        READS.labels("standby").inc()
        return answer

    def state(self) -> StandbyState:
        """The standby's state: the one measured last while it is fresh, else measured now.
        Only one thread measures at a time; the others meanwhile use the last state."""
        with self._lock:
            known = self._known()
            if known is not None:
                return known
            self._measuring = True
        try:
            measured, error = self._measure()
        finally:
            with self._lock:
                self._measuring = False
        self._settle(measured, error)
        return measured

    def known_state(self) -> StandbyState | None:
        """What :meth:`state` would answer without measuring (the state measured last, while
        it is fresh or measured anew), else None. Never queries, so it may be asked from
        the event loop."""
        with self._lock:
            return self._known()

    def close(self) -> None:
        """Close the standby's pooled connections."""
        if self.standby_engine is not None:
            self.standby_engine.dispose()

    # --- inside -----------------------------------------------------------------------

    def _known(self) -> StandbyState | None:
        """The state measured last while :meth:`state` may answer it (under the lock)."""
        known = self._state
        if known is not None and (self._measuring or self._clock() - known.checked_at < self._ttl):
            return known
        return None

    @staticmethod
    def _in_session(sessions: sessionmaker[Session], read: Callable[[Session], T]) -> T:
        with sessions() as session:
            return read(session)

    def _on_primary(self, read: Callable[[Session], T], reason: Reason | None = None) -> T:
        if reason is not None:
            READ_FALLBACKS.labels(reason).inc()
        answer = retry_on_disconnect(lambda: self._in_session(self.primary, read))()
        READS.labels("primary").inc()
        return answer

    def _measure(self) -> tuple[StandbyState, BaseException | None]:
        assert self.standby_engine is not None
        try:
            with self.standby_engine.connect() as connection:
                raw = connection.execute(LAG_QUERY).scalar_one()
        except (DBAPIError, PoolTimeoutError) as exc:
            return StandbyState(False, failure_reason(exc), None, self._clock()), exc
        # A standby whose clock is behind the primary's would show less than none.
        lag = None if raw is None else max(0.0, float(raw))
        if lag is None or lag > self.max_lag_seconds:
            return StandbyState(False, "lag", lag, self._clock()), None
        return StandbyState(True, None, lag, self._clock()), None

    def _settle(self, state: StandbyState, error: BaseException | None = None) -> None:
        """Keep ``state`` as the standby's, and log it when reads change course."""
        with self._lock:
            before = self._state
            self._state = state
        if state.lag_seconds is not None:
            STANDBY_LAG.set(state.lag_seconds)
        if before is not None and (before.usable, before.reason) == (state.usable, state.reason):
            return
        if state.usable:
            log.info("reads go to the standby", lag_seconds=state.lag_seconds)
        else:
            log.warning(
                "reads fall back to the primary",
                reason=state.reason,
                lag_seconds=state.lag_seconds,
                max_lag_seconds=self.max_lag_seconds,
                error=repr(error) if error is not None else None,
            )
