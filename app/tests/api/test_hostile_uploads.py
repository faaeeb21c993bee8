"""Hostile EPUBs: refused with the limit they passed, read away from the event loop, and
never in the way of other requests (tests/fixtures/hostile_epub.py makes them)."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from api_helpers import API, client_for, shop_form
from fastapi import FastAPI
from morpheus.db import comics
from morpheus.settings import Settings
from server_helpers import free_port, settings_env, start_gunicorn, stop, wait_until_live
from sqlalchemy.orm import Session

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_epub.py"
MiB = 1024 * 1024
EPUB = "application/epub+zip"
# Limits that let a bomb past the ZIP's directory, so that reading it takes its time.
PERMISSIVE: dict[str, Any] = {
    "epub_max_unpacked_bytes": 1 << 40,
    "epub_max_member_bytes": 1 << 40,
    "epub_max_compression_ratio": 1e9,
    "max_text_chars": 1 << 40,
}


def load_hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("morpheus_test_hostile_epub", HOSTILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostile = load_hostile()


@pytest.fixture(scope="module")
def markup_bomb() -> bytes:
    return bytes(hostile.markup_bomb(95 * MiB))


async def post_epub(api: httpx.AsyncClient, auth: dict[str, str], data: bytes) -> httpx.Response:
    return await api.post(
        "/v1/comics",
        files={"file": ("hostile.epub", data, EPUB)},
        data={"title": "Hostile"},
        headers=auth,
    )


@pytest.mark.parametrize(
    ("make", "status", "limit", "message"),
    [
        pytest.param(
            lambda: hostile.markup_bomb(95 * MiB),
            413,
            "epub_max_unpacked_bytes",
            "The EPUB unpacks to 95.0 MiB; the most we accept is 32.0 MiB",
            id="markup-bomb",
        ),
        pytest.param(
            lambda: hostile.deflate_bomb(8 * MiB),
            422,
            "epub_max_compression_ratio",
            "is compressed more than 100 to 1",
            id="deflate-bomb",
        ),
        pytest.param(
            lambda: hostile.entity_epub("container", "utf-16"),
            422,
            None,
            "declares XML entities or a DTD, which we do not accept",
            id="utf16-entities",
        ),
        pytest.param(
            lambda: hostile.entity_epub("chapter", "utf-16"),
            422,
            None,
            "declares XML entities or a DTD, which we do not accept",
            id="utf16-entities-in-a-chapter",
        ),
    ],
)
async def test_hostile_epubs_are_refused_naming_the_limit(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db_session: Session,
    make: Callable[[], bytes],
    status: int,
    limit: str | None,
    message: str,
) -> None:
    before = comics.count_comics(db_session)
    response = await post_epub(api, auth, make())
    assert response.status_code == status, response.text
    body = response.json()
    assert message in body["detail"]
    assert body.get("limit") == limit
    assert comics.count_comics(db_session) == before


async def test_text_length_limit_is_enforced_while_reading(
    app_factory: Callable[..., FastAPI], auth: dict[str, str]
) -> None:
    app = app_factory(**{**PERMISSIVE, "max_text_chars": 100_000})
    async with client_for(app, API) as api:
        response = await post_epub(api, auth, hostile.markup_bomb(4 * MiB))
    assert response.status_code == 413
    assert response.json()["limit"] == "max_text_chars"
    assert "longer than the 100,000 characters we accept" in response.json()["detail"]


async def test_the_storefront_names_the_limit_on_its_page(
    shop: httpx.AsyncClient, markup_bomb: bytes
) -> None:
    response = await shop.post(
        "/comics",
        files={"file": ("hostile.epub", markup_bomb, EPUB)},
        data={"title": "Hostile", "page_format": "a4", **await shop_form(shop)},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "the limit on an EPUB&#39;s unpacked size" in response.text
    assert 'value="Hostile"' in response.text  # the form comes back as it was typed


async def test_reading_that_takes_too_long_is_stopped(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], markup_bomb: bytes
) -> None:
    app = app_factory(**PERMISSIVE, ingest_timeout_seconds=1)
    async with client_for(app, API) as api:
        response = await post_epub(api, auth, markup_bomb)
    assert response.status_code == 422, response.text
    assert response.json()["limit"] == "ingest_timeout_seconds"
    assert "took longer than the 1 s we allow" in response.json()["detail"]
    assert multiprocessing.active_children() == []  # the reader was killed and reaped


async def test_reading_that_needs_too_much_memory_is_stopped(
    app_factory: Callable[..., FastAPI], auth: dict[str, str]
) -> None:
    # Long paragraphs: the text piles up much faster than the markup is parsed.
    bomb = hostile.markup_bomb(160 * MiB, paragraph="<p>" + "dull boy " * 20_000 + "</p>\n")
    app = app_factory(**PERMISSIVE, ingest_memory_bytes=64 * MiB, ingest_timeout_seconds=60)
    async with client_for(app, API) as api:
        response = await post_epub(api, auth, bomb)
    assert response.status_code == 413, response.text
    assert response.json()["limit"] == "ingest_memory_bytes"
    assert multiprocessing.active_children() == []


async def test_a_good_epub_is_still_read(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    good = hostile.markup_bomb(256 * 1024)  # the same book, at a sane length
    response = await post_epub(api, auth, good)
    assert response.status_code == 202, response.text


# --- the real server, under attack --------------------------------------------------------


@pytest.mark.slow
def test_other_requests_are_answered_while_two_hostile_epubs_are_refused(
    settings: Settings, api_key: str, tmp_path: Path, markup_bomb: bytes
) -> None:
    """One Gunicorn worker; two bombs that each take seconds to refuse; meanwhile the
    worker keeps answering health checks and API reads, and is never restarted."""
    secrets = tmp_path / "no-secrets"
    secrets.mkdir()
    slow = settings.model_copy(
        update={**PERMISSIVE, "ingest_timeout_seconds": 4, "rate_limit_enabled": False}
    )
    env = settings_env(slow, secrets)
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    server = start_gunicorn(env, port, workers=1, log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {api_key}", "Host": "api.morpheus.localhost"}
    try:
        wait_until_live(port, server, log_path)
        bombs: list[httpx.Response] = []
        finished: list[float] = []

        def post_bomb() -> None:
            response = httpx.post(
                f"{base}/v1/comics",
                files={"file": ("bomb.epub", markup_bomb, EPUB)},
                data={"title": "Bomb"},
                headers=auth,
                timeout=60,
            )
            bombs.append(response)
            finished.append(time.monotonic())

        threads = [threading.Thread(target=post_bomb) for _ in range(2)]
        for thread in threads:
            thread.start()
        answered_meanwhile: list[int] = []
        with httpx.Client(base_url=base, timeout=30) as client:
            while any(thread.is_alive() for thread in threads):
                live = client.get("/health/live")
                unknown = client.get(f"/v1/comics/{uuid.uuid4()}", headers=auth)
                if not finished:  # both bombs were still being read when these came back
                    answered_meanwhile += [live.status_code, unknown.status_code]
                time.sleep(0.05)
        for thread in threads:
            thread.join()
    finally:
        stop(server)
    assert [r.status_code for r in bombs] == [422, 422], [r.text for r in bombs]
    assert {r.json()["limit"] for r in bombs} == {"ingest_timeout_seconds"}
    # With the reading on the event loop, nothing would come back before a bomb is done.
    assert len(answered_meanwhile) >= 4
    assert set(answered_meanwhile) == {200, 404}
    log = log_path.read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    booted = [r for r in records if "Booting worker" in str(r.get("event"))]
    assert len(booted) == 1, log  # the worker was never killed for a timeout
    assert "WORKER TIMEOUT" not in log
