"""Idempotent submissions: one comic per Idempotency-Key (API) or form token (storefront)."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import Callable

import httpx
import pytest
from api_helpers import API, NOVEL, client_for
from fastapi import FastAPI
from morpheus.db import api_keys, comics
from morpheus.db.models import Comic
from morpheus.queue import client as queue_client
from morpheus.settings import Settings
from sqlalchemy import select
from sqlalchemy.orm import Session

TOKEN_RE = re.compile(r'<input type="hidden" name="form_token" value="([^"]+)">')


def comics_titled(db_session: Session, title: str) -> list[Comic]:
    db_session.expire_all()
    return list(db_session.scalars(select(Comic).where(Comic.title == title)))


def novel(title: str, **more: object) -> dict[str, object]:
    return {"title": title, "text": NOVEL, **more}


async def test_the_same_key_and_body_twice_give_one_comic_and_the_same_answer(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session, settings: Settings
) -> None:
    title = f"Once {uuid.uuid4().hex[:6]}"
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    first = await api.post("/v1/comics", json=novel(title), headers=headers)
    second = await api.post("/v1/comics", json=novel(title), headers=headers)

    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert first.headers["location"] == second.headers["location"]
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    comics = comics_titled(db_session, title)
    assert [str(c.id) for c in comics] == [first.json()["id"]]
    assert await queue_client.queue_counts(settings) == {
        "waiting": 1,
        "active": 0,
        "delayed": 0,
        "failed": 0,
        "completed": 0,
    }


async def test_a_replay_answers_as_the_first_time_whatever_happened_since(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session
) -> None:
    headers = {**auth, "Idempotency-Key": "order-2026-12-04.1"}
    first = await api.post("/v1/comics", json=novel("Later"), headers=headers)
    comics.start_comic(db_session, first.json()["id"])
    again = await api.post("/v1/comics", json=novel("Later"), headers=headers)
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.json()["status"] == "queued"


async def test_the_same_key_with_another_body_is_a_422_naming_the_conflict(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session
) -> None:
    title = f"Conflict {uuid.uuid4().hex[:6]}"
    key = str(uuid.uuid4())
    headers = {**auth, "Idempotency-Key": key}
    first = await api.post("/v1/comics", json=novel(title), headers=headers)
    assert first.status_code == 202
    for body in (
        novel(title, text=NOVEL + "\nOne more line."),
        novel(title + " (2)"),
        novel(title, style={"page_format": "a5"}),
    ):
        refused = await api.post("/v1/comics", json=body, headers=headers)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert "Idempotency-Key conflict" in detail
        assert key in detail and first.json()["id"] in detail
    assert len(comics_titled(db_session, title)) == 1
    assert comics_titled(db_session, title + " (2)") == []


async def test_keys_belong_to_their_api_key(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session
) -> None:
    other = {"Authorization": f"Bearer {api_keys.create_api_key(db_session, 'other').key}"}
    title = f"Shared key {uuid.uuid4().hex[:6]}"
    key = {"Idempotency-Key": "same-key-for-both"}
    mine = await api.post("/v1/comics", json=novel(title), headers={**auth, **key})
    theirs = await api.post("/v1/comics", json=novel(title), headers={**other, **key})
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert len(comics_titled(db_session, title)) == 2


@pytest.mark.parametrize(
    "key",
    ["", "x" * 129, "with space", "caf\u00e9", "semi;colon", 'quote"d', "new\nline"],
    ids=["empty", "too-long", "space", "non-ascii", "semicolon", "quote", "newline"],
)
async def test_malformed_keys_are_a_422_and_store_nothing(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session, key: str
) -> None:
    title = f"Bad key {uuid.uuid4().hex[:6]}"
    headers = [
        *((name.encode(), value.encode()) for name, value in auth.items()),
        (b"Idempotency-Key", key.encode("utf-8")),
    ]
    refused = await api.post("/v1/comics", json=novel(title), headers=headers)
    assert refused.status_code == 422, refused.text
    assert "Idempotency-Key must be 1-128 characters" in refused.json()["detail"]
    assert comics_titled(db_session, title) == []


async def test_the_longest_key_and_every_allowed_character_are_accepted(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for key in ("k" * 128, "AZaz09-_.~:+/="):
        response = await api.post(
            "/v1/comics", json=novel("Allowed"), headers={**auth, "Idempotency-Key": key}
        )
        assert response.status_code == 202, response.text


async def test_concurrent_posts_with_one_key_give_one_comic(
    app: FastAPI, auth: dict[str, str], db_session: Session, settings: Settings
) -> None:
    title = f"Racing {uuid.uuid4().hex[:6]}"
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    async with client_for(app, API) as api:
        answers = await asyncio.gather(
            *(api.post("/v1/comics", json=novel(title), headers=headers) for _ in range(8))
        )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    assert len(comics_titled(db_session, title)) == 1
    assert (await queue_client.queue_counts(settings))["waiting"] == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_a_submission_the_queue_refused_frees_its_key_for_the_retry(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], db_session: Session
) -> None:
    title = f"Retried {uuid.uuid4().hex[:6]}"
    headers = {**auth, "Idempotency-Key": str(uuid.uuid4())}
    down = app_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with client_for(down, API) as api:
        refused = await api.post("/v1/comics", json=novel(title), headers=headers)
    assert refused.status_code == 503
    async with client_for(app_factory(), API) as api:
        retried = await api.post("/v1/comics", json=novel(title), headers=headers)
    assert retried.status_code == 202
    assert "idempotent-replayed" not in retried.headers
    statuses = {str(c.id): c.status for c in comics_titled(db_session, title)}
    assert statuses[retried.json()["id"]] == "queued"
    assert sorted(statuses.values()) == ["failed", "queued"]


# --- the storefront ---------------------------------------------------------------------


async def form_token(shop: httpx.AsyncClient) -> str:
    page = await shop.get("/")
    match = TOKEN_RE.search(page.text)
    assert match, "no form token in the page"
    return match[1]


async def test_storefront_double_post_gives_one_comic(
    shop: httpx.AsyncClient, db_session: Session
) -> None:
    title = f"Double click {uuid.uuid4().hex[:6]}"
    token = await form_token(shop)
    form = {"title": title, "text": NOVEL, "page_format": "a4", "form_token": token}
    first, second = await asyncio.gather(
        shop.post("/comics", data=form), shop.post("/comics", data=form)
    )
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert [f"/comics/{c.id}" for c in comics_titled(db_session, title)] == [
        first.headers["location"]
    ]
    # Sent once more, later (the browser's back button, then the button again).
    third = await shop.post("/comics", data=form)
    assert third.headers["location"] == first.headers["location"]


async def test_storefront_form_resent_with_another_novel_keeps_what_was_typed(
    shop: httpx.AsyncClient, db_session: Session
) -> None:
    token = await form_token(shop)
    title = f"Edited {uuid.uuid4().hex[:6]}"
    first = await shop.post("/comics", data={"title": title, "text": NOVEL, "form_token": token})
    assert first.status_code == 303
    changed = {"title": title + " again", "text": NOVEL, "form_token": token}
    refused = await shop.post("/comics", data=changed)
    assert refused.status_code == 422
    assert "already sent with another novel" in refused.text
    assert f'value="{title} again"' in refused.text
    fresh = TOKEN_RE.search(refused.text)
    assert fresh and fresh[1] != token
    resent = await shop.post("/comics", data={**changed, "form_token": fresh[1]})
    assert resent.status_code == 303 and resent.headers["location"] != first.headers["location"]


async def test_every_form_gets_its_own_token_and_the_button_is_disabled_on_submit(
    shop: httpx.AsyncClient,
) -> None:
    assert await form_token(shop) != await form_token(shop)
    page = (await shop.get("/")).text
    assert "data-submit-once" in page
    assert '<script src="/static/storefront.js" defer></script>' in page
    script = await shop.get("/static/storefront.js")
    assert script.status_code == 200
    assert "button.disabled = true" in script.text
