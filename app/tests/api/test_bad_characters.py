"""Characters PostgreSQL cannot store (NUL, unpaired surrogates) and other odd input are
refused at the boundary with a 422 naming the field, never a 500: examples first, then
Hypothesis over the request models, posted to the real app on the real PostgreSQL."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from api_helpers import NOVEL
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from morpheus.db import comics
from sqlalchemy.orm import Session

PADDING = "Mara climbed the stairs at dusk. " * 300  # 9,900 characters: past the first 8 KiB


def raw_json(payload: Any) -> dict[str, Any]:
    """A JSON body as a hostile client sends it: lone surrogates escaped as \\udXXX."""
    return {
        "content": json.dumps(payload).encode("ascii"),
        "headers": {"Content-Type": "application/json"},
    }


@pytest.fixture
def app(app_factory: Callable[..., FastAPI]) -> FastAPI:
    """The app without rate limits: these tests submit many novels."""
    return app_factory(rate_limit_enabled=False)


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        pytest.param(
            {"title": "The\x00Lighthouse", "text": NOVEL},
            "title",
            "must not contain NUL characters (U+0000 at position 3)",
            id="nul-in-title",
        ),
        pytest.param(
            {"title": "The Lighthouse", "text": PADDING + "\x00" + NOVEL},
            "text",
            f"must not contain NUL characters (U+0000 at position {len(PADDING)})",
            id="nul-after-8-kib",
        ),
        pytest.param(
            {"title": "The Lighthouse", "text": NOVEL + "\ud800"},
            "text",
            "must not contain unpaired surrogates (U+D800",
            id="lone-surrogate-in-text",
        ),
        pytest.param(
            {"title": "\udfff", "text": NOVEL},
            "title",
            "must not contain unpaired surrogates (U+DFFF at position 0)",
            id="lone-surrogate-in-title",
        ),
        pytest.param(
            {"title": "Bell\x07", "text": NOVEL},
            "title",
            "must not contain control characters (U+0007 at position 4)",
            id="control-in-title",
        ),
        pytest.param(
            {"title": " \t\n ", "text": NOVEL}, "title", "must not be blank", id="blank-title"
        ),
        pytest.param(
            {"title": "T", "text": NOVEL, "\ud800": 1},
            "body",
            "unable to parse raw data as a unicode string",
            id="surrogate-field-name",
        ),
    ],
)
async def test_unstorable_characters_are_422_naming_the_field(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db_session: Session,
    payload: dict[str, Any],
    field: str,
    message: str,
) -> None:
    before = comics.count_comics(db_session)
    request = raw_json(payload)
    response = await api.post(
        "/v1/comics", content=request["content"], headers={**auth, **request["headers"]}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"{field}: ")
    assert message in detail
    assert comics.count_comics(db_session) == before


async def test_a_nul_after_8_kib_of_an_uploaded_file_is_422(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    data = (PADDING + "\x00" + NOVEL).encode()
    response = await api.post(
        "/v1/comics",
        files={"file": ("novel.txt", data, "text/plain")},
        data={"title": "T"},
        headers=auth,
    )
    assert response.status_code == 422
    assert f"NUL character at position {len(PADDING):,}" in response.json()["detail"]


async def test_titles_are_stored_with_their_white_space_made_one_space(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session
) -> None:
    response = await api.post(
        "/v1/comics", json={"title": "  The\tLong\n\nNight  ", "text": NOVEL}, headers=auth
    )
    assert response.status_code == 202
    comic = comics.get_comic(db_session, response.json()["id"])
    assert comic is not None and comic.title == "The Long Night"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 200_000 + b"]" * 200_000, id="deep-nesting"),
        pytest.param(
            b'{"title": "T", "text": "x", "style": {"page_width": 1' + b"0" * 5000 + b"}}"
        ),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[]", id="not-an-object"),
    ],
)
async def test_unusable_json_is_422(
    api: httpx.AsyncClient, auth: dict[str, str], body: bytes
) -> None:
    response = await api.post(
        "/v1/comics", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": "The\x00Lighthouse", "text": NOVEL}, "title: must not contain NUL characters"),
        ({"title": "T", "text": PADDING + "\x00" + NOVEL}, "text: must not contain NUL characters"),
    ],
)
async def test_the_storefront_refuses_nul_with_a_page(
    shop: httpx.AsyncClient, fields: dict[str, str], message: str
) -> None:
    response = await shop.post("/comics", data={**fields, "page_format": "a4"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text


# --- properties ---------------------------------------------------------------------------

# Any code point at all, surrogates included, with the troublesome ones drawn often.
ANY_CHARACTER = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\x07", "\t", "\n", " "]),
)
ANY_TEXT = st.text(ANY_CHARACTER, max_size=40)
BAD_CHARACTER = st.sampled_from(["\x00", "\ud800", "\udfff", "\x07"])
# Any text, or a good one with a bad character somewhere in it.
TITLE = st.one_of(
    ANY_TEXT,
    st.text(st.characters(categories=("L", "N", "Zs")), min_size=1, max_size=40),
    st.builds(
        lambda c, i: "The Lighthouse"[:i] + c + "The Lighthouse"[i:],
        BAD_CHARACTER,
        st.integers(0, 14),
    ),
)
# Any text; the novel; the novel with a bad character, after the first 8 KiB or not.
TEXT = st.one_of(
    ANY_TEXT,
    st.just(NOVEL),
    st.builds(
        lambda pad, c, tail: pad + c + tail,
        st.sampled_from(["", PADDING]),
        BAD_CHARACTER,
        st.just(NOVEL) | ANY_TEXT,
    ),
)
STYLE = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"page_format": st.sampled_from(["a4", "letter", "a5"])}),
    st.fixed_dictionaries({"page_format": st.sampled_from(["a0", "", "\x00"])}),
    st.dictionaries(ANY_TEXT, st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
)
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def expect_no_server_error(response: httpx.Response, title: str, text: str) -> None:
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code == 422 and ("\x00" in title or "\x00" in text):
        detail = response.json()["detail"] if "json" in response.headers["content-type"] else ""
        if detail:
            assert detail.split(":", 1)[0] in ("title", "text", "style", "body"), detail


@PROPERTY_SETTINGS
@given(title=TITLE, text=TEXT, style=STYLE)
async def test_json_submissions_never_get_a_server_error(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db_session: Session,
    title: str,
    text: str,
    style: dict[str, Any],
) -> None:
    request = raw_json({"title": title, "text": text, "style": style})
    response = await api.post(
        "/v1/comics", content=request["content"], headers={**auth, **request["headers"]}
    )
    expect_no_server_error(response, title, text)
    if response.status_code == 202:
        comic = comics.get_comic(db_session, response.json()["id"], with_source=True)
        assert comic is not None
        assert comic.title == " ".join(title.split())
        assert "\x00" not in comic.source_text


@PROPERTY_SETTINGS
@given(title=TITLE, text=TEXT)
async def test_form_submissions_never_get_a_server_error(
    shop: httpx.AsyncClient, db_session: Session, title: str, text: str
) -> None:
    # Form fields travel as UTF-8; a surrogate goes as the bytes a careless client sends.
    body = urllib.parse.urlencode(
        {"title": title, "text": text, "page_format": "a4"}, errors="surrogatepass"
    )
    response = await shop.post(
        "/comics",
        content=body.encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code == 303:
        comic = comics.get_comic(db_session, response.headers["location"].split("/")[-1])
        assert comic is not None and "\x00" not in comic.title


async def test_a_nul_in_a_dashboard_login_is_a_wrong_login(
    desk: httpx.AsyncClient, operator: tuple[str, str]
) -> None:
    form = await desk.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    username, password = operator
    response = await desk.post(
        "/login",
        data={"username": username + "\x00", "password": password, "csrf_token": token[1]},
    )
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
