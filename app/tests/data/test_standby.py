"""Reads on the hot standby (morpheus.db.standby), against a real standby of the machine's
PostgreSQL: how its lag is measured, how often, what makes a read go to the primary, and
that a write through the standby's sessions fails."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hot_standby import HotStandby
from morpheus.db import comics
from morpheus.db.models import Comic
from morpheus.db.session import make_engine
from morpheus.db.standby import LAG_QUERY, ReadRouter, is_read_only_violation
from prometheus_client import REGISTRY
from sqlalchemy import Engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from structlog.testing import capture_logs


def closed_port_url(database_url: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return make_url(database_url).set(port=port).render_as_string(hide_password=False)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.5) -> None:
        self.now += seconds


@pytest.fixture
def primary(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=2, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def make_router(primary: Engine) -> Iterator[Callable[..., ReadRouter]]:
    """Routers whose standby engine is at a URL the test gives, closed after it."""
    made: list[ReadRouter] = []

    def build(standby_url: str, **options: Any) -> ReadRouter:
        engine = make_engine(standby_url, pool_size=4, max_overflow=0, read_only=True)
        router = ReadRouter(primary, engine, **options)
        made.append(router)
        return router

    yield build
    for router in made:
        router.close()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def server(session: Session) -> tuple[bool, int]:
    """Whether the server that answers is a standby, and its port."""
    row = session.execute(text("SELECT pg_is_in_recovery(), inet_server_port()")).one()
    return bool(row[0]), int(row[1])


def new_comic(session: Session, title: str = "Lag probe") -> Comic:
    return comics.create_comic(session, title=title, source_text="a few words")


def test_a_healthy_standby_answers_the_reads(
    make_router: Callable[..., ReadRouter], standby: HotStandby, database_url: str
) -> None:
    router = make_router(standby.url(database_url))
    before = counted("morpheus_db_reads_total", target="standby")
    assert router.run(server) == (True, standby.port)
    assert counted("morpheus_db_reads_total", target="standby") == before + 1


def test_an_idle_primary_is_no_lag(
    make_router: Callable[..., ReadRouter],
    standby: HotStandby,
    database_url: str,
    db_session: Session,
) -> None:
    """A standby that has replayed all it received is not behind, however long ago the
    last transaction was: the age of the last one replayed is no measure of lag then."""
    new_comic(db_session)
    standby.catch_up()
    time.sleep(2.5)
    router = make_router(standby.url(database_url), max_lag_seconds=2.0)
    state = router.state()
    assert state.usable, state
    assert state.lag_seconds is not None and state.lag_seconds < 1.0, state


def test_lag_past_the_bound_sends_reads_to_the_primary_until_replay_resumes(
    make_router: Callable[..., ReadRouter],
    standby: HotStandby,
    database_url: str,
    db_session: Session,
) -> None:
    clock = Clock()
    router = make_router(standby.url(database_url), max_lag_seconds=2.0, clock=clock)
    assert router.state().usable
    with capture_logs() as logs:
        standby.pause_replay()
        try:
            new_comic(db_session)
            time.sleep(2.5)
            clock.advance()
            lagging = router.state()
            answers = [router.run(server) for _ in range(5)]
            clock.advance()
            assert not router.state().usable  # measured again: still behind
        finally:
            standby.resume_replay()
        standby.catch_up()
        clock.advance()
        back = router.state()
        assert router.run(server) == (True, standby.port)
    assert not lagging.usable and lagging.reason == "lag"
    assert lagging.lag_seconds is not None and lagging.lag_seconds > 2.0
    assert answers == [(False, make_url(database_url).port)] * 5
    assert back.usable and back.lag_seconds is not None and back.lag_seconds <= 2.0
    assert REGISTRY.get_sample_value("morpheus_db_standby_lag_seconds") == back.lag_seconds
    # Told once when reads left the standby, once when they came back: not per read.
    events = [(entry["event"], entry.get("reason")) for entry in logs]
    assert events == [
        ("reads fall back to the primary", "lag"),
        ("reads go to the standby", None),
    ], logs


def test_the_state_is_measured_once_per_period_by_one_thread(
    make_router: Callable[..., ReadRouter], standby: HotStandby, database_url: str
) -> None:
    clock = Clock()
    router = make_router(standby.url(database_url), clock=clock)
    assert router.standby_engine is not None
    measured: list[str] = []

    @event.listens_for(router.standby_engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement == LAG_QUERY.text:
            measured.append(statement)

    for _ in range(10):
        router.run(server)
    assert len(measured) == 1  # the first read measured; the next ones used its state

    clock.advance()
    start = threading.Barrier(16)
    answers: list[tuple[bool, int]] = []

    def read() -> None:
        start.wait()
        answers.append(router.run(server))

    threads = [threading.Thread(target=read) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [(True, standby.port)] * 16
    assert len(measured) == 2  # one thread measured again; the others used the last state


def test_the_known_state_is_the_fresh_one_and_never_measured(
    make_router: Callable[..., ReadRouter], standby: HotStandby, database_url: str
) -> None:
    """What the health routes read on the event loop: the state measured last while it is
    fresh, else nothing, and never a query."""
    clock = Clock()
    router = make_router(standby.url(database_url), clock=clock)
    assert router.standby_engine is not None
    measured: list[str] = []

    @event.listens_for(router.standby_engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement == LAG_QUERY.text:
            measured.append(statement)

    assert router.known_state() is None  # never measured
    state = router.state()
    assert router.known_state() == state
    clock.advance()
    assert router.known_state() is None  # stale: the next read measures it
    assert len(measured) == 1


def test_a_read_that_fails_on_the_standby_runs_on_the_primary_and_the_standby_rests(
    make_router: Callable[..., ReadRouter], standby: HotStandby, database_url: str
) -> None:
    clock = Clock()
    router = make_router(standby.url(database_url), clock=clock)

    def where_and_lsn(session: Session) -> tuple[bool, str]:
        # The primary's WAL position: a standby (in recovery) refuses to tell it.
        lsn = session.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
        return server(session)[0], lsn

    errors = counted("morpheus_db_read_fallbacks_total", reason="error")
    assert router.run(where_and_lsn)[0] is False
    assert counted("morpheus_db_read_fallbacks_total", reason="error") == errors + 1
    # Until the state is measured again, every read goes to the primary.
    state = router.state()
    assert not state.usable and state.reason == "error"
    assert router.run(server)[0] is False
    assert counted("morpheus_db_read_fallbacks_total", reason="error") == errors + 2
    clock.advance()
    assert router.run(server) == (True, standby.port)


def test_an_unreachable_standby_sends_reads_to_the_primary(
    make_router: Callable[..., ReadRouter], database_url: str
) -> None:
    router = make_router(closed_port_url(database_url))
    before = counted("morpheus_db_read_fallbacks_total", reason="unreachable")
    with capture_logs() as logs:
        assert [router.run(server)[0] for _ in range(3)] == [False] * 3
    assert router.state().reason == "unreachable"
    assert counted("morpheus_db_read_fallbacks_total", reason="unreachable") == before + 3
    assert [entry["event"] for entry in logs] == ["reads fall back to the primary"]


def test_an_answer_the_caller_calls_missing_is_asked_of_the_primary(
    make_router: Callable[..., ReadRouter],
    standby: HotStandby,
    database_url: str,
    db_session: Session,
) -> None:
    router = make_router(standby.url(database_url), max_lag_seconds=60.0)
    assert router.state().usable
    standby.pause_replay()
    try:
        comic = new_comic(db_session, "Just submitted")

        def read(session: Session) -> str | None:
            return session.scalar(select(Comic.title).where(Comic.id == comic.id))

        assert router.run(read) is None  # the standby has not replayed it
        before = counted("morpheus_db_read_fallbacks_total", reason="not_found")
        assert router.run(read, missing=lambda title: title is None) == "Just submitted"
        assert counted("morpheus_db_read_fallbacks_total", reason="not_found") == before + 1
        # Nothing is wrong with the standby for that.
        assert router.state().usable
    finally:
        standby.resume_replay()


@pytest.mark.parametrize("standby_at", ["standby", "primary", "nowhere"])
def test_a_write_through_the_read_sessions_fails(
    make_router: Callable[..., ReadRouter],
    standby: HotStandby,
    database_url: str,
    db_session: Session,
    standby_at: str,
) -> None:
    """The reads' sessions are read-only: the standby's, the standby's at a URL that
    reaches the primary by mistake, and the primary's when it answers in the standby's
    stead. A write they refuse is not run again on the primary."""
    urls = {
        "standby": standby.url(database_url),
        "primary": database_url,
        "nowhere": closed_port_url(database_url),
    }
    router = make_router(urls[standby_at])
    # A primary is no standby, but it is not behind.
    assert router.state().usable is (standby_at != "nowhere")
    written: list[uuid.UUID] = []

    def write(session: Session) -> None:
        comic = comics.new_comic(title="Written", source_text="by mistake")
        written.append(comic.id)
        session.add(comic)
        session.commit()

    with pytest.raises(DBAPIError) as caught:
        router.run(write)
    assert is_read_only_violation(caught.value), caught.value
    assert "read-only transaction" in str(caught.value)
    assert len(written) == 1  # tried once, on the server the read went to
    reachable = [router.primary] if standby_at == "nowhere" else [router.primary, router.standby]
    for sessions in reachable:
        assert sessions is not None
        with sessions() as session, pytest.raises(DBAPIError) as direct:
            write(session)
        assert is_read_only_violation(direct.value)
    assert [comics.get_comic(db_session, comic_id) for comic_id in written] == [None] * len(written)
    assert router.state().usable is (standby_at != "nowhere")
