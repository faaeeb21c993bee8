"""The dashboard's listing and the status polls on a hot standby of the machine's
PostgreSQL, and on the primary while the standby is behind, stopped, or has not replayed
a comic just submitted; readiness never fails for the standby.

Which server answered shows in what the pages say: while the standby's replay is paused,
a comic renamed on the primary keeps its old title there. The counts of
``morpheus_db_reads_total`` and ``morpheus_db_read_fallbacks_total`` say it too.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_helpers import API, DESK, NOVEL, SHOP, client_for, shop_form
from fastapi import FastAPI
from hot_standby import HotStandby
from morpheus.db import api_keys, comics
from morpheus.db.models import Comic
from morpheus.db.standby import LAG_QUERY, REASONS, STATE_TTL_SECONDS
from prometheus_client import REGISTRY
from sqlalchemy import Engine, event, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

INTERNAL = "http://10.1.2.3:8000"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def counts() -> dict[str, float]:
    """Reads by the server that answered, and fallbacks by reason, so far."""
    found = {
        target: REGISTRY.get_sample_value("morpheus_db_reads_total", {"target": target}) or 0.0
        for target in ("standby", "primary")
    }
    for reason in REASONS:
        labels = {"reason": reason}
        found[reason] = REGISTRY.get_sample_value("morpheus_db_read_fallbacks_total", labels) or 0.0
    return found


def since(before: dict[str, float]) -> dict[str, float]:
    """What was counted since ``before``, leaving out what was not."""
    now = counts()
    return {key: now[key] - before[key] for key in now if now[key] != before[key]}


def rename(db_session: Session, *comic_ids: uuid.UUID, title: str) -> None:
    db_session.execute(update(Comic).where(Comic.id.in_(comic_ids)).values(title=title))
    db_session.commit()


def past_the_state() -> None:
    """Wait until the standby's state measured last is stale: the next read measures it."""
    time.sleep(STATE_TTL_SECONDS + 0.2)


@dataclass
class Sites:
    api: httpx.AsyncClient
    shop: httpx.AsyncClient
    desk: httpx.AsyncClient
    probe: httpx.AsyncClient
    auth: dict[str, str]
    api_comic: uuid.UUID
    shop_comic: uuid.UUID

    async def polls(self) -> list[httpx.Response]:
        """The dashboard's listing, the API's status poll and the storefront's."""
        return [
            await self.desk.get("/"),
            await self.api.get(f"/v1/comics/{self.api_comic}", headers=self.auth),
            await self.shop.get(f"/comics/{self.shop_comic}"),
        ]

    async def titles(self) -> list[str]:
        """The title each poll shows of its comic."""
        listing, status, page = await self.polls()
        for response in (listing, status, page):
            assert response.status_code == 200, response.text
        return [
            _title_in_listing(listing.text, self.api_comic),
            status.json()["title"],
            _title_in_page(page.text),
        ]


def _title_in_listing(html: str, comic_id: uuid.UUID) -> str:
    match = re.search(rf'<a href="/comics/{comic_id}">([^<]*)</a>', html)
    assert match, "the comic is not in the listing"
    return match[1]


def _title_in_page(html: str) -> str:
    match = re.search(r'<h1 id="comic-title">([^<]*)</h1>', html)
    assert match, "no title on the status page"
    return match[1]


@pytest.fixture
def standby_app(
    app_factory: Callable[..., FastAPI], standby: HotStandby, database_url: str
) -> Callable[..., FastAPI]:
    """The app with the hot standby for its reads, bound as the test says."""

    def build(max_lag_seconds: float) -> FastAPI:
        return app_factory(
            database_read_url=standby.url(database_url),
            database_read_max_lag_seconds=max_lag_seconds,
        )

    return build


@pytest.fixture
async def sites(
    db_session: Session, operator: tuple[str, str], standby: HotStandby
) -> AsyncIterator[Callable[[FastAPI], Sites]]:
    """Clients of an app's three sites (the dashboard's logged in), with a comic of an API
    key and one of the storefront, both on the standby already."""
    key = api_keys.create_api_key(db_session, f"standby-{uuid.uuid4().hex[:8]}")
    api_comic = comics.create_comic(
        db_session, title="Before", source_text=NOVEL, api_key_id=key.api_key.id
    )
    shop_comic = comics.create_comic(db_session, title="Before", source_text=NOVEL)
    standby.catch_up()
    opened: list[httpx.AsyncClient] = []

    async def open_sites(app: FastAPI) -> Sites:
        clients = [client_for(app, base) for base in (API, SHOP, DESK, INTERNAL)]
        opened.extend(clients)
        api, shop, desk, probe = clients
        form = await desk.get("/login")
        match = CSRF_RE.search(form.text)
        assert match, form.text
        username, password = operator
        credentials = {"username": username, "password": password, "csrf_token": match[1]}
        assert (await desk.post("/login", data=credentials)).status_code == 303
        auth = {"Authorization": f"Bearer {key.key}"}
        return Sites(api, shop, desk, probe, auth, api_comic.id, shop_comic.id)

    yield open_sites
    for client in opened:
        await client.aclose()


async def test_the_listing_and_the_status_polls_are_the_standbys_while_it_is_healthy(
    standby_app: Callable[..., FastAPI],
    sites: Callable[[FastAPI], Sites],
    standby: HotStandby,
    db_session: Session,
) -> None:
    web = await sites(standby_app(max_lag_seconds=60))
    assert await web.titles() == ["Before"] * 3
    standby.pause_replay()
    try:
        rename(db_session, web.api_comic, web.shop_comic, title="Renamed on the primary")
        before = counts()
        # Not replayed yet, and well within the bound: the standby's titles.
        assert await web.titles() == ["Before"] * 3
        assert since(before) == {"standby": 3}
        ready = await web.probe.get("/health/ready")
    finally:
        standby.resume_replay()
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok", "postgresql_standby": "ok"}
    standby.catch_up()
    assert await web.titles() == ["Renamed on the primary"] * 3


def statements(engine: Engine, text: str) -> list[str]:
    """Each run of the statement ``text`` on ``engine`` from now on."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement == text:
            seen.append(statement)

    return seen


async def test_a_burst_of_health_requests_shows_the_standby_without_asking_it_again(
    standby_app: Callable[..., FastAPI], standby: HotStandby
) -> None:
    """The standby's state is the one its reads last measured, beside the round of checks
    of PostgreSQL and Redis that the requests share: neither is asked per request."""
    app = standby_app(max_lag_seconds=60)
    context = app.state.context
    assert context.reads.standby_engine is not None
    measured = statements(context.reads.standby_engine, LAG_QUERY.text)
    pinged = statements(context.engine, "SELECT 1")
    async with client_for(app, INTERNAL) as probe:
        first = await probe.get("/health/ready")
        assert (len(measured), len(pinged)) == (1, 1)
        measured.clear()
        pinged.clear()
        answers = await asyncio.gather(
            *(probe.get(path) for path in ["/health", "/health/ready"] * 15)
        )
    assert [answer.status_code for answer in [first, *answers]] == [200] * 31
    assert {answer.json()["status"] for answer in answers} == {"ok"}
    assert all(
        answer.json()["checks"] == {"postgresql": "ok", "redis": "ok", "postgresql_standby": "ok"}
        for answer in [first, *answers]
    )
    # Within a second of the first: none; a burst that outlasts it, one more of each.
    assert len(measured) <= 1 and len(pinged) <= 1


async def test_lag_past_the_bound_sends_the_reads_to_the_primary_until_replay_resumes(
    standby_app: Callable[..., FastAPI],
    sites: Callable[[FastAPI], Sites],
    standby: HotStandby,
    db_session: Session,
) -> None:
    web = await sites(standby_app(max_lag_seconds=2))
    before = counts()
    assert await web.titles() == ["Before"] * 3
    assert since(before) == {"standby": 3}

    standby.pause_replay()
    try:
        rename(db_session, web.api_comic, web.shop_comic, title="While the standby lags")
        time.sleep(2.5)  # the standby is now more than two seconds behind
        past_the_state()
        before = counts()
        assert await web.titles() == ["While the standby lags"] * 3
        assert since(before) == {"primary": 3, "lag": 3}
        ready = await web.probe.get("/health/ready")
        summary = await web.probe.get("/health")
    finally:
        standby.resume_replay()
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["postgresql_standby"] == "lagging"
    assert "failed" not in ready.json()
    assert summary.json()["status"] == "degraded"
    assert (REGISTRY.get_sample_value("morpheus_db_standby_lag_seconds") or 0) > 2

    standby.catch_up()
    past_the_state()
    before = counts()
    assert await web.titles() == ["While the standby lags"] * 3
    assert since(before) == {"standby": 3}


async def test_a_stopped_standby_leaves_the_reads_to_the_primary_and_readiness_stays(
    standby_app: Callable[..., FastAPI],
    sites: Callable[[FastAPI], Sites],
    standby: HotStandby,
) -> None:
    web = await sites(standby_app(max_lag_seconds=5))
    before = counts()
    assert await web.titles() == ["Before"] * 3  # the app pools connections to the standby
    assert since(before) == {"standby": 3}

    standby.stop()
    try:
        before = counts()
        # The first read meets a dead connection, runs on the primary and rests the
        # standby; the others go to the primary at once.
        responses = await web.polls()
        assert [response.status_code for response in responses] == [200, 200, 200]
        assert since(before) == {"primary": 3, "unreachable": 3}
        past_the_state()
        assert await web.titles() == ["Before"] * 3  # measured again: still down
        ready = await web.probe.get("/health/ready")
        summary = await web.probe.get("/health")
    finally:
        standby.start()
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "postgresql": "ok",
        "redis": "ok",
        "postgresql_standby": "unavailable",
    }
    assert summary.status_code == 200 and summary.json()["status"] == "degraded"

    standby.catch_up()
    past_the_state()
    before = counts()
    assert await web.titles() == ["Before"] * 3
    assert since(before) == {"standby": 3}


async def test_a_comic_just_submitted_is_found_by_its_status_poll_before_the_standby_has_it(
    standby_app: Callable[..., FastAPI],
    sites: Callable[[FastAPI], Sites],
    standby: HotStandby,
    database_url: str,
) -> None:
    web = await sites(standby_app(max_lag_seconds=60))
    assert await web.titles() == ["Before"] * 3
    standby.pause_replay()
    try:
        before = counts()
        accepted = await web.api.post(
            "/v1/comics", json={"title": "Polled at once", "text": NOVEL}, headers=web.auth
        )
        assert accepted.status_code == 202, accepted.text
        status = await web.api.get(accepted.json()["status_url"], headers=web.auth)
        form = {"title": "Read at once", "text": NOVEL, **await shop_form(web.shop)}
        submitted = await web.shop.post("/comics", data=form)
        assert submitted.status_code == 303, submitted.text
        page = await web.shop.get(submitted.headers["location"])
        counted = since(before)
        # The standby still says that neither exists.
        on_standby = standby.query(
            "SELECT count(*) FROM comics WHERE id IN (%s, %s)",
            accepted.json()["id"],
            submitted.headers["location"].rsplit("/", 1)[1],
            database=make_url(database_url).database or "",
        )
        # A comic that exists nowhere is still a 404.
        missing = await web.api.get(f"/v1/comics/{uuid.uuid4()}", headers=web.auth)
    finally:
        standby.resume_replay()
    assert status.status_code == 200, status.text
    assert status.json()["title"] == "Polled at once"
    assert page.status_code == 200, page.text
    assert _title_in_page(page.text) == "Read at once"
    assert on_standby == 0
    assert counted == {"primary": 2, "not_found": 2}
    assert missing.status_code == 404
