"""Readiness checked in shared, briefly reused rounds, never reported "ok" past a failure.

First the rounds themselves, with checks the test controls and a clock it moves; then
the app against the machine's Redis reached through a relay that the test can cut, so
that Redis fails as a network failure would, under the running app. (The database met
failing under requests is ``test_database_outage``'s: readiness says so at once.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from api_helpers import SHOP, client_for
from fastapi import FastAPI
from morpheus.services.readiness import MAX_AGE_SECONDS, Readiness, Round, ServiceChecks
from morpheus.settings import Settings
from redis.asyncio.connection import parse_url

INTERNAL = "http://10.1.2.3:8000"


class Service:
    """A check the test controls: it passes or fails, may be held, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ConnectionError("refused")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def readiness(*names: str, max_age: float = 1.0) -> tuple[Readiness, dict[str, Service], Clock]:
    services = {name: Service() for name in names}
    clock = Clock()
    return Readiness(services, max_age=max_age, clock=clock), services, clock


async def test_concurrent_requests_share_one_round() -> None:
    checked, services, _ = readiness("postgresql", "redis")
    gate = asyncio.Event()
    for service in services.values():
        service.gate = gate
    waiting = [asyncio.create_task(checked.current()) for _ in range(20)]
    await asyncio.sleep(0.01)
    gate.set()
    rounds = await asyncio.gather(*waiting)
    assert [s.calls for s in services.values()] == [1, 1]
    assert all(found is rounds[0] for found in rounds)
    assert rounds[0].checks == {"postgresql": "ok", "redis": "ok"}


async def test_a_passed_round_is_reused_for_its_period_only() -> None:
    checked, services, clock = readiness("redis", max_age=1.0)
    first = await checked.current()
    clock.now += 0.99
    assert await checked.current() is first
    assert services["redis"].calls == 1
    clock.now += 0.01  # the period is counted from the round's start
    assert await checked.current() is not first
    assert services["redis"].calls == 2


async def test_a_failure_is_reported_by_the_first_round_after_the_period() -> None:
    checked, services, clock = readiness("postgresql", "redis", max_age=1.0)
    assert (await checked.current()).failed == []
    services["redis"].failing = True
    clock.now += 1.0
    found = await checked.current()
    assert found.checks == {"postgresql": "ok", "redis": "unavailable"}
    assert found.failed == ["redis"]


async def test_a_failed_round_is_never_reused() -> None:
    checked, services, _ = readiness("redis", max_age=60.0)
    services["redis"].failing = True
    assert (await checked.current()).failed == ["redis"]
    services["redis"].failing = False
    # The clock has not moved: the service back is seen at once.
    assert (await checked.current()).failed == []
    assert services["redis"].calls == 2


async def test_a_failure_met_by_the_process_ends_the_period_at_once() -> None:
    checked, services, clock = readiness("postgresql", "redis", max_age=60.0)
    await checked.current()
    clock.now += 0.1
    checked.saw_failure("postgresql")
    services["postgresql"].failing = True
    clock.now += 0.1
    assert (await checked.current()).failed == ["postgresql"]
    assert services["postgresql"].calls == 2


async def test_a_round_under_way_when_a_failure_is_met_does_not_say_ok() -> None:
    checked, services, clock = readiness("postgresql", "redis")
    gate = asyncio.Event()
    services["postgresql"].gate = gate
    under_way = asyncio.create_task(checked.current())
    await asyncio.sleep(0.01)
    clock.now += 0.1
    checked.saw_failure("postgresql")  # its check had already started, and will pass
    gate.set()
    found = await under_way
    assert found.checks == {"postgresql": "unavailable", "redis": "ok"}
    # Nor is that round reused.
    services["postgresql"].gate = None
    clock.now += 0.1
    assert (await checked.current()).failed == []
    assert services["postgresql"].calls == 2


async def test_a_request_that_goes_away_leaves_the_round_to_the_others() -> None:
    checked, services, _ = readiness("redis")
    gate = asyncio.Event()
    services["redis"].gate = gate
    leaving = asyncio.create_task(checked.current())
    staying = asyncio.create_task(checked.current())
    await asyncio.sleep(0.01)
    leaving.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    assert (await staying).checks == {"redis": "ok"}
    assert services["redis"].calls == 1
    with pytest.raises(asyncio.CancelledError):
        await leaving


def test_the_standby_is_shown_beside_the_round_and_never_fails_readiness() -> None:
    passed = Round({"postgresql": "ok", "redis": "ok"}, started=1000.0)
    assert ServiceChecks(passed).checks == {"postgresql": "ok", "redis": "ok"}
    assert ServiceChecks(passed).healthy
    assert ServiceChecks(passed, "ok").healthy
    for standby in ("lagging", "unavailable"):
        found = ServiceChecks(passed, standby)
        assert found.checks == {"postgresql": "ok", "redis": "ok", "postgresql_standby": standby}
        assert found.failed == []
        assert not found.healthy
    failed = ServiceChecks(Round({"postgresql": "unavailable", "redis": "ok"}, 1000.0), "ok")
    assert failed.failed == ["postgresql"]
    assert not failed.healthy


# --- the app, with Redis behind a relay ------------------------------------------------


class Relay:
    """A TCP relay to Redis on a port of its own: counts the PINGs that pass, and when
    cut drops every connection and each new one as it comes."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.pings = 0
        self.cut = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def drop(self) -> None:
        self.cut = True
        for writer in self.writers:
            writer.transport.abort()

    async def close(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, upstream_writer}

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, count: bool
        ) -> None:
            try:
                while data := await source.read(65536):
                    if count:
                        self.pings += data.upper().count(b"\r\nPING\r\n")
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(
            pipe(reader, upstream_writer, True), pipe(upstream_reader, writer, False)
        )
        self.writers -= {writer, upstream_writer}


@pytest.fixture
async def relay(settings: Settings) -> AsyncIterator[tuple[Relay, str]]:
    """The relay, and the Redis URL that goes through it."""
    target = parse_url(settings.redis_url)
    relay = Relay(target.get("host", "127.0.0.1"), int(target.get("port", 6379)))
    port = await relay.start()
    try:
        yield relay, f"redis://127.0.0.1:{port}/{target.get('db', 0)}"
    finally:
        await relay.close()


async def test_a_burst_of_health_requests_checks_redis_once(
    app_factory: Callable[..., FastAPI], relay: tuple[Relay, str]
) -> None:
    counted, url = relay
    app = app_factory(redis_url=url)
    # The client's connection made first (its handshake pings too), then counted.
    await app.state.context.redis.ping()
    counted.pings = 0
    async with client_for(app, INTERNAL) as probe:
        answers = await asyncio.gather(
            *(probe.get(path) for path in ["/health", "/health/ready"] * 15)
        )
    assert [a.status_code for a in answers] == [200] * 30
    assert {a.json()["status"] for a in answers} == {"ok"}
    assert counted.pings == 1


async def test_redis_cut_is_reported_within_the_period_and_back_at_once(
    app_factory: Callable[..., FastAPI], relay: tuple[Relay, str]
) -> None:
    counted, url = relay
    app = app_factory(redis_url=url)
    async with client_for(app, INTERNAL) as probe:
        assert (await probe.get("/health/ready")).status_code == 200
        counted.drop()
        await asyncio.sleep(MAX_AGE_SECONDS)
        ready = await probe.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["redis"]
        assert (await probe.get("/health")).json()["status"] == "degraded"
        counted.cut = False
        # A failed round is not reused: the first request after Redis is back sees it.
        assert (await probe.get("/health/ready")).status_code == 200


async def test_redis_failing_under_a_request_is_reported_at_once(
    app_factory: Callable[..., FastAPI], relay: tuple[Relay, str]
) -> None:
    counted, url = relay
    app = app_factory(redis_url=url)
    async with client_for(app, INTERNAL) as probe, client_for(app, SHOP) as shop:
        assert (await probe.get("/health/ready")).status_code == 200
        counted.drop()
        # The storefront's rate limit meets Redis failing (and lets the page through) ...
        assert (await shop.get("/")).status_code == 200
        # ... so the round that passed a moment ago is not reused.
        ready = await probe.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["redis"]
