"""The service with database URLs of several hosts whose first is dead (as when the
primary's host is lost and the next PgBouncer answers): it is ready at the first ask, the
status polls are answered, and no log line shows the URL's password."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable

from api_helpers import API, NOVEL, client_for
from fastapi import FastAPI
from hot_standby import HotStandby
from morpheus.db import api_keys, comics
from morpheus.services.readiness import CHECK_TIMEOUT_SECONDS
from prometheus_client import REGISTRY
from several_hosts import (
    CONNECT_TIMEOUT,
    TEST_URL_PASSWORD,
    DeadHost,
    dead_host,
    several_hosts,
)
from sqlalchemy.orm import Session


def standby_reads() -> float:
    return REGISTRY.get_sample_value("morpheus_db_reads_total", {"target": "standby"}) or 0.0


async def test_the_service_is_ready_and_answers_past_a_dead_first_host(
    app_factory: Callable[..., FastAPI],
    database_url: str,
    dead: DeadHost,
    db_session: Session,
    log_buffer: io.StringIO,
) -> None:
    """Readiness waits for a new connection to get past the dead host: a silent one costs
    the whole connect_timeout, longer than a check of one host may take."""
    assert CONNECT_TIMEOUT >= CHECK_TIMEOUT_SECONDS
    key = api_keys.create_api_key(db_session, f"hosts-{uuid.uuid4().hex[:8]}")
    comic = comics.create_comic(
        db_session, title="Past the dead host", source_text=NOVEL, api_key_id=key.api_key.id
    )
    app = app_factory(database_url=several_hosts(database_url, dead.address))
    async with client_for(app, API) as api:
        started = time.monotonic()
        ready = await api.get("/health/ready")
        seconds = time.monotonic() - started
        status = await api.get(
            f"/v1/comics/{comic.id}", headers={"Authorization": f"Bearer {key.key}"}
        )
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}
    if dead.kind == "silent":
        assert seconds > CONNECT_TIMEOUT - 0.1, seconds
    assert status.status_code == 200, status.text
    assert status.json()["title"] == "Past the dead host"
    assert TEST_URL_PASSWORD not in log_buffer.getvalue()


async def test_the_status_polls_read_the_standby_past_a_dead_first_host(
    app_factory: Callable[..., FastAPI],
    database_url: str,
    standby: HotStandby,
    db_session: Session,
) -> None:
    key = api_keys.create_api_key(db_session, f"hosts-{uuid.uuid4().hex[:8]}")
    comic = comics.create_comic(
        db_session, title="On the standby", source_text=NOVEL, api_key_id=key.api_key.id
    )
    standby.catch_up()
    with dead_host("silent") as first, dead_host("silent") as read_first:
        app = app_factory(
            database_url=several_hosts(database_url, first.address),
            database_read_url=several_hosts(standby.url(database_url), read_first.address),
            database_read_max_lag_seconds=60,
        )
        async with client_for(app, API) as api:
            ready = await api.get("/health/ready")
            before = standby_reads()
            status = await api.get(
                f"/v1/comics/{comic.id}", headers={"Authorization": f"Bearer {key.key}"}
            )
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "postgresql": "ok",
        "redis": "ok",
        "postgresql_standby": "ok",
    }
    assert status.status_code == 200, status.text
    assert status.json()["title"] == "On the standby"
    assert standby_reads() == before + 1
