"""The storefront: host routing, submitting a novel, the status page, reading, downloads."""

from __future__ import annotations

import re
import uuid

import httpx
from api_helpers import NOVEL, SHOP, client_for, shop_form
from fastapi import FastAPI
from morpheus.db import api_keys, comics
from morpheus.settings import Settings
from morpheus.worker.comic_job import run_comic
from sqlalchemy.orm import Session


async def submit_form(shop: httpx.AsyncClient, title: str = "The Lighthouse") -> str:
    form = {"title": title, "text": NOVEL, "page_format": "a4", **await shop_form(shop)}
    response = await shop.post("/comics", data=form)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert re.fullmatch(r"/comics/[0-9a-f-]{36}", location)
    return location.rsplit("/", 1)[1]


async def test_home_has_an_accessible_form(shop: httpx.AsyncClient) -> None:
    response = await shop.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="en">' in html
    assert "<main" in html and "<header" in html and "<footer" in html
    for field in ("title", "text", "file", "page_format"):
        assert f'<label for="{field}"' in html
        assert f'id="{field}"' in html
    assert 'enctype="multipart/form-data"' in html
    # Nothing inline (strict CSP): scripts come from /static only.
    assert "style=" not in html
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/storefront.js" defer>']


async def test_static_stylesheet_is_served(shop: httpx.AsyncClient) -> None:
    response = await shop.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in response.text


async def test_pasted_novel_becomes_a_queued_comic(
    shop: httpx.AsyncClient, db_session: Session
) -> None:
    comic_id = await submit_form(shop)
    comic = comics.get_comic(db_session, comic_id)
    assert comic is not None and comic.api_key_id is None
    assert comic.client_addr == "203.0.113.7"
    page = await shop.get(f"/comics/{comic_id}")
    assert page.status_code == 200
    assert '<meta http-equiv="refresh" content="3">' in page.text
    assert "<progress" in page.text and "queued" in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_uploaded_file_becomes_a_comic(shop: httpx.AsyncClient, db_session: Session) -> None:
    response = await shop.post(
        "/comics",
        data={"title": "From a file", "text": "", **await shop_form(shop)},
        files={"file": ("novel.md", ("# Part one\n\n" + NOVEL).encode(), "text/markdown")},
    )
    assert response.status_code == 303
    comic = comics.get_comic(db_session, response.headers["location"].rsplit("/", 1)[1])
    assert comic is not None and comic.title == "From a file"


async def test_refused_novel_shows_the_form_again_with_what_was_typed(
    shop: httpx.AsyncClient, db_session: Session
) -> None:
    before = comics.count_comics(db_session)
    response = await shop.post(
        "/comics",
        data={"title": "My <b>title</b>", "text": "", "page_format": "a5", **await shop_form(shop)},
        files={"file": ("novel.bin", b"\x00\xff" * 100, "application/octet-stream")},
    )
    assert response.status_code == 422
    html = response.text
    assert 'role="alert"' in html
    assert "not supported" in html
    assert 'value="My &lt;b&gt;title&lt;/b&gt;"' in html  # kept, and escaped
    assert '<option value="a5" selected>' in html
    assert comics.count_comics(db_session) == before

    response = await shop.post(
        "/comics", data={"title": "Kept", "text": "  ", **await shop_form(shop)}
    )
    assert response.status_code == 422
    assert 'value="Kept"' in response.text


async def test_unknown_comic_is_an_html_404(shop: httpx.AsyncClient) -> None:
    response = await shop.get(f"/comics/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No comic with this id" in response.text


async def test_comics_of_api_clients_are_not_shown_on_the_storefront(
    shop: httpx.AsyncClient, db_session: Session
) -> None:
    key = api_keys.create_api_key(db_session, "client")
    comic = comics.create_comic(
        db_session, title="Private", source_text=NOVEL, api_key_id=key.api_key.id
    )
    response = await shop.get(f"/comics/{comic.id}")
    assert response.status_code == 404
    assert "Private" not in response.text


async def test_read_and_download_a_finished_comic(
    shop: httpx.AsyncClient, settings: Settings
) -> None:
    comic_id = await submit_form(shop)
    unfinished = await shop.get(f"/comics/{comic_id}/comic.pdf")
    assert unfinished.status_code == 409
    assert (await shop.get(f"/comics/{comic_id}/read/1")).status_code == 303

    assert await run_comic(settings, comic_id) == "completed"
    status = await shop.get(f"/comics/{comic_id}")
    assert "http-equiv" not in status.text  # finished: no more refreshing
    assert f'href="/comics/{comic_id}/read/1"' in status.text
    assert f'href="/comics/{comic_id}/comic.pdf"' in status.text

    first = await shop.get(f"/comics/{comic_id}/read/1")
    assert first.status_code == 200
    assert f'src="/comics/{comic_id}/pages/1.png"' in first.text
    assert 'alt="Page 1 of The Lighthouse"' in first.text
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = await shop.get(f"/comics/{comic_id}/read/2")
    assert second.status_code == 200 and 'rel="prev"' in second.text
    assert (await shop.get(f"/comics/{comic_id}/read/99")).status_code == 404

    image = await shop.get(f"/comics/{comic_id}/pages/1.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["etag"] and "max-age" in image.headers["cache-control"]
    pdf = await shop.get(f"/comics/{comic_id}/comic.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    cbz = await shop.get(f"/comics/{comic_id}/comic.cbz")
    assert cbz.status_code == 200 and cbz.content.startswith(b"PK")
    assert (await shop.get(f"/comics/{comic_id}/comic.zip")).status_code == 404


async def test_storefront_submissions_are_rate_limited_per_address(
    app_factory: object, db_session: Session
) -> None:
    app: FastAPI = app_factory(rate_limit_submissions_per_hour=2)  # type: ignore[operator]
    async with client_for(app, SHOP) as shop:
        for _ in range(2):
            await submit_form(shop)
        refused = await shop.post(
            "/comics", data={"title": "Third", "text": NOVEL, **await shop_form(shop)}
        )
        assert refused.status_code == 429
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        assert refused.headers["content-type"].startswith("text/html")
    # Another address still may.
    async with client_for(app, SHOP, addr="198.51.100.20") as other:
        await submit_form(other)


async def test_oversize_upload_on_the_storefront_is_a_413_page(
    app_factory: object, db_session: Session
) -> None:
    app: FastAPI = app_factory(max_upload_bytes=1024)  # type: ignore[operator]
    before = comics.count_comics(db_session)
    async with client_for(app, SHOP) as shop:
        response = await shop.post(
            "/comics",
            data={"title": "Too long", **await shop_form(shop)},
            files={"file": ("big.txt", b"word " * 2000, "text/plain")},
        )
    assert response.status_code == 413
    assert 'role="alert"' in response.text and "largest novel we accept" in response.text
    assert 'value="Too long"' in response.text
    assert comics.count_comics(db_session) == before


async def test_openapi_describes_the_submission(app: FastAPI) -> None:
    async with client_for(app, "http://api.morpheus.localhost") as api:
        spec = (await api.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/comics"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"401", "413", "422", "429"} <= set(operation["responses"])
