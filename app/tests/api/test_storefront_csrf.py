"""CSRF on the storefront (and the dashboard's Origin check).

The storefront's form token is tied to the visitor: it is valid only with the visitor
cookie of the browser the form was shown to. A POST whose Origin (or, without one, its
Referer) is another site is refused with 403 and a page that says why, before anything
is read; a POST without a token that fits this visitor is refused with 403 and the form
shown again, what was typed kept. Nothing is submitted either way.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from api_helpers import DESK, NOVEL, SHOP, client_for, shop_form
from fastapi import FastAPI
from morpheus.db import comics
from morpheus.web.csrf import VISITOR_COOKIE
from sqlalchemy.orm import Session
from test_dashboard import csrf_of

CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "http://morpheus.localhost.evil.example"},
    {"Origin": "null"},
    {"Referer": "https://evil.example/page.html"},
    {"Origin": "ftp://morpheus.localhost"},
]


def titled(db_session: Session, title: str) -> list[object]:
    db_session.expire_all()
    return [c for c in comics.list_comics(db_session, limit=500) if c.title == title]


def novel(title: str) -> dict[str, str]:
    return {"title": title, "text": NOVEL, "page_format": "a4"}


async def test_the_form_sets_a_visitor_cookie_with_safe_flags(app: FastAPI) -> None:
    async with client_for(app, SHOP) as shop:
        page = await shop.get("/")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{VISITOR_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    async with client_for(app, SHOP.replace("http:", "https:"), addr="127.0.0.1") as shop:
        page = await shop.get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in page.headers["set-cookie"]


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_a_cross_site_post_is_a_403_page(
    shop: httpx.AsyncClient, db_session: Session, headers: dict[str, str]
) -> None:
    title = f"Forged {uuid.uuid4().hex[:6]}"
    # Even with this visitor's cookie and a valid token (a browser sends the cookie).
    response = await shop.post(
        "/comics", data={**novel(title), **await shop_form(shop)}, headers=headers
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Not allowed" in response.text
    assert "another site" in response.text and "nothing was sent" in response.text
    assert titled(db_session, title) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://morpheus.localhost"},
        {"Origin": "http://MORPHEUS.localhost:8443"},  # a forwarded port is the same site
        {"Referer": "http://morpheus.localhost/"},
    ],
)
async def test_a_post_from_the_storefront_itself_goes_through(
    shop: httpx.AsyncClient, db_session: Session, headers: dict[str, str]
) -> None:
    title = f"Own {uuid.uuid4().hex[:6]}"
    response = await shop.post(
        "/comics", data={**novel(title), **await shop_form(shop)}, headers=headers
    )
    assert response.status_code == 303, response.text
    assert len(titled(db_session, title)) == 1


async def test_behind_https_an_http_origin_is_another_site(
    app: FastAPI, db_session: Session
) -> None:
    title = f"Downgraded {uuid.uuid4().hex[:6]}"
    https = {"X-Forwarded-Proto": "https"}
    async with client_for(app, SHOP.replace("http:", "https:"), addr="127.0.0.1") as shop:
        form = await shop_form(shop, headers=https)
        refused = await shop.post(
            "/comics",
            data={**novel(title), **form},
            headers={**https, "Origin": "http://morpheus.localhost"},
        )
        accepted = await shop.post(
            "/comics",
            data={**novel(title), **form},
            headers={**https, "Origin": "https://morpheus.localhost"},
        )
    assert refused.status_code == 403
    assert accepted.status_code == 303
    assert len(titled(db_session, title)) == 1


async def test_a_post_without_a_token_of_this_visitor_is_refused(
    app: FastAPI, db_session: Session
) -> None:
    title = f"Tokenless {uuid.uuid4().hex[:6]}"
    async with client_for(app, SHOP) as shop, client_for(app, SHOP) as other:
        # No token at all; a random one; another visitor's; this visitor's, altered.
        theirs = await shop_form(other)
        mine = await shop_form(shop)
        nonce, _, mac = mine["form_token"].partition(".")
        for token in (None, "made-up-token", theirs["form_token"], f"{nonce}.{mac[::-1]}"):
            data = novel(title) if token is None else {**novel(title), "form_token": token}
            response = await shop.post("/comics", data=data)
            assert response.status_code == 403, token
            html = response.text
            assert "expired" in html and "nothing was sent" in html
            # The form again, with what was typed and a token that now fits.
            assert f'value="{title}"' in html
            assert 'name="form_token"' in html
        assert titled(db_session, title) == []
        fresh = re.search(r'name="form_token" value="([^"]+)"', html)
        assert fresh
        resent = await shop.post("/comics", data={**novel(title), "form_token": fresh[1]})
        assert resent.status_code == 303
        # A visitor whose cookie is gone (a new browser) cannot use the old page's token.
        shop.cookies.delete(VISITOR_COOKIE)
        stale = await shop.post("/comics", data={**novel(title + " 2"), **mine})
        assert stale.status_code == 403
    assert len(titled(db_session, title)) == 1
    assert titled(db_session, title + " 2") == []


async def test_the_dashboard_refuses_cross_site_posts_too(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    async with client_for(app, DESK) as desk:
        token = csrf_of((await desk.get("/login")).text)
        data = {"username": operator[0], "password": operator[1], "csrf_token": token}
        forged = await desk.post("/login", data=data, headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403
        assert "another site" in forged.text
        assert (await desk.get("/")).status_code == 401
        own = await desk.post(
            "/login", data=data, headers={"Origin": "http://dashboard.morpheus.localhost"}
        )
        assert own.status_code == 303
