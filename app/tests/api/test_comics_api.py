"""The JSON API: submission, status, outputs, cancellation, and every refusal."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from api_helpers import API, NOVEL, client_for, make_epub
from fastapi import FastAPI
from morpheus.db import api_keys, comics
from morpheus.settings import Settings
from morpheus.worker.comic_job import run_comic
from sqlalchemy.orm import Session

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def count(db_session: Session) -> int:
    return comics.count_comics(db_session)


async def submit(api: httpx.AsyncClient, auth: dict[str, str], **body: object) -> str:
    response = await api.post(
        "/v1/comics", json={"title": "The Lighthouse", "text": NOVEL, **body}, headers=auth
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.fixture
async def completed_comic(api: httpx.AsyncClient, auth: dict[str, str], settings: Settings) -> str:
    """A comic made by the real comic job (segment, render, compose, package)."""
    comic_id = await submit(api, auth)
    assert await run_comic(settings, comic_id) == "completed"
    return comic_id


# --- submission -------------------------------------------------------------------------


async def test_json_submission_is_accepted_and_queued(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session, settings: Settings
) -> None:
    response = await api.post(
        "/v1/comics",
        json={"title": "The Lighthouse", "text": NOVEL, "style": {"page_format": "a5"}},
        headers=auth,
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["location"] == body["status_url"] == f"/v1/comics/{body['id']}"
    comic = comics.get_comic(db_session, body["id"])
    assert comic is not None and comic.title == "The Lighthouse"
    assert comic.options["page_width"] == 874 and comic.options["page_height"] == 1240
    assert comic.client_addr == "203.0.113.7"
    from morpheus.queue.client import job_state

    assert await job_state(settings, body["id"]) == "waiting"


@pytest.mark.parametrize(
    ("filename", "content_type", "payload"),
    [
        ("novel.txt", "text/plain", NOVEL.encode()),
        ("novel.md", "text/markdown", ("# The Lighthouse\n\n" + NOVEL).encode()),
        (
            "novel.epub",
            "application/epub+zip",
            make_epub([("Chapter 1", "Mara climbed the stairs."), ("Chapter 2", "Tom came.")]),
        ),
    ],
)
async def test_file_upload_is_accepted(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db_session: Session,
    filename: str,
    content_type: str,
    payload: bytes,
) -> None:
    response = await api.post(
        "/v1/comics",
        data={"title": "Uploaded", "page_format": "letter"},
        files={"file": (filename, payload, content_type)},
        headers=auth,
    )
    assert response.status_code == 202, response.text
    comic = comics.get_comic(db_session, response.json()["id"], with_source=True)
    assert comic is not None
    assert "Mara" in comic.source_text
    assert comic.options["page_format"] == "letter"


async def test_x_api_key_header_is_accepted(api: httpx.AsyncClient, api_key: str) -> None:
    response = await api.post(
        "/v1/comics", json={"title": "T", "text": NOVEL}, headers={"X-API-Key": api_key}
    )
    assert response.status_code == 202


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer mph_000000000000_" + "x" * 43},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "not-a-key"},
    ],
    ids=["missing", "unknown", "wrong-scheme", "malformed"],
)
async def test_without_a_valid_key_everything_is_401(
    api: httpx.AsyncClient, headers: dict[str, str], db_session: Session
) -> None:
    before = count(db_session)
    some_id = uuid.uuid4()
    for method, path in [
        ("POST", "/v1/comics"),
        ("GET", f"/v1/comics/{some_id}"),
        ("GET", f"/v1/comics/{some_id}.pdf"),
        ("GET", f"/v1/comics/{some_id}/pages/1"),
        ("POST", f"/v1/comics/{some_id}/cancel"),
    ]:
        response = await api.request(
            method, path, json={"title": "T", "text": NOVEL}, headers=headers
        )
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert count(db_session) == before


async def test_revoked_key_is_refused(api: httpx.AsyncClient, db_session: Session) -> None:
    created = api_keys.create_api_key(db_session, "to-revoke")
    api_keys.revoke_api_key(db_session, created.api_key.id)
    response = await api.get(
        f"/v1/comics/{uuid.uuid4()}", headers={"Authorization": f"Bearer {created.key}"}
    )
    assert response.status_code == 401


async def test_unknown_ids_are_404(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    unknown = uuid.uuid4()
    for path in (
        f"/v1/comics/{unknown}",
        f"/v1/comics/{unknown}.pdf",
        f"/v1/comics/{unknown}.cbz",
        f"/v1/comics/{unknown}/pages/1",
        "/v1/comics/not-a-uuid",
    ):
        assert (await api.get(path, headers=auth)).status_code == 404, path
    assert (await api.post(f"/v1/comics/{unknown}/cancel", headers=auth)).status_code == 404


async def test_another_keys_comic_is_not_revealed(
    api: httpx.AsyncClient, auth: dict[str, str], db_session: Session
) -> None:
    comic_id = await submit(api, auth)
    other = {"X-API-Key": api_keys.create_api_key(db_session, "other").key}
    response = await api.get(f"/v1/comics/{comic_id}", headers=other)
    assert response.status_code == 404
    assert "Lighthouse" not in response.text
    assert (await api.post(f"/v1/comics/{comic_id}/cancel", headers=other)).status_code == 404


async def test_outputs_of_an_unfinished_comic_are_409(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    comic_id = await submit(api, auth)
    for path in (f"{comic_id}.pdf", f"{comic_id}.cbz", f"{comic_id}/pages/1"):
        response = await api.get(f"/v1/comics/{path}", headers=auth)
        assert response.status_code == 409, path
        assert "not ready" in response.json()["detail"]


async def test_declared_oversize_body_is_413_before_reading(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], db_session: Session
) -> None:
    app = app_factory(max_upload_bytes=1024)
    before = count(db_session)
    received = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal received
        for _ in range(1000):
            received += 64 * 1024
            yield b"x" * (64 * 1024)

    async with client_for(app, API) as api:
        response = await api.post(
            "/v1/comics",
            content=body(),
            headers={
                **auth,
                "Content-Type": "application/json",
                "Content-Length": str(1000 * 64 * 1024),
            },
        )
    assert response.status_code == 413
    assert "KiB" in response.json()["detail"]
    assert count(db_session) == before


async def test_streamed_oversize_body_is_cut_off_while_reading(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], db_session: Session
) -> None:
    app = app_factory(max_upload_bytes=1024)
    before = count(db_session)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="n.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n"
        )
        for _ in range(1000):
            sent += 16 * 1024
            yield b"y" * (16 * 1024)

    async with client_for(app, API) as api:
        # No Content-Length (chunked): only counting while reading can stop it.
        response = await api.post(
            "/v1/comics",
            content=body(),
            headers={**auth, "Content-Type": "multipart/form-data; boundary=zzz"},
        )
    assert response.status_code == 413
    # Refused at the chunk that crossed the limit (1 KiB + 64 KiB envelope), not at the end.
    assert sent < 200 * 1024
    assert count(db_session) == before


async def test_novel_over_the_limit_is_413(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], db_session: Session
) -> None:
    app = app_factory(max_upload_bytes=2048)
    before = count(db_session)
    async with client_for(app, API) as api:
        response = await api.post(
            "/v1/comics",
            files={"file": ("big.txt", b"word " * 1000, "text/plain")},
            data={"title": "Big"},
            headers=auth,
        )
    assert response.status_code == 413
    assert "largest novel we accept" in response.json()["detail"]
    assert count(db_session) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"json": {"title": "T", "text": "   \n  "}}, "nothing to turn into a comic"),
        ({"json": {"title": "", "text": NOVEL}}, "title"),
        ({"json": {"title": "T", "text": NOVEL, "style": {"page_format": "a0"}}}, "page_format"),
        ({"json": {"title": "T", "text": NOVEL, "colour": "red"}}, "colour"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, "JSON"),
        (
            {
                "files": {"file": ("n.txt", b"\x00\x01\x02\xff\xfe" * 200, "text/plain")},
                "data": {"title": "T"},
            },
            "",
        ),
        (
            {
                "files": {"file": ("n.epub", b"PK not a zip", "application/epub+zip")},
                "data": {"title": "T"},
            },
            "EPUB",
        ),
        (
            {"files": {"file": ("n.pdf", b"%PDF-1.4", "application/pdf")}, "data": {"title": "T"}},
            ".pdf",
        ),
        ({"data": {"title": "T"}}, "paste"),
    ],
    ids=[
        "blank",
        "no-title",
        "bad-style",
        "extra-field",
        "bad-json",
        "binary",
        "bad-epub",
        "pdf",
        "nothing",
    ],
)
async def test_unusable_novels_are_422_with_a_message(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    db_session: Session,
    kwargs: dict[str, object],
    message: str,
) -> None:
    before = count(db_session)
    headers = {**auth, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    response = await api.post("/v1/comics", headers=headers, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
    assert message in detail
    assert count(db_session) == before


async def test_other_content_types_are_415(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await api.post(
        "/v1/comics", content=NOVEL, headers={**auth, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_queue_down_after_the_row_was_written_marks_the_comic_failed(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], db_session: Session
) -> None:
    app = app_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    title = f"Unqueued {uuid.uuid4().hex[:6]}"
    async with client_for(app, API) as api:
        response = await api.post("/v1/comics", json={"title": title, "text": NOVEL}, headers=auth)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "try again" in response.json()["detail"]
    stored = [c for c in comics.list_comics(db_session, limit=500) if c.title == title]
    assert len(stored) == 1
    assert stored[0].status == "failed"
    assert "could not be queued" in (stored[0].error or "")


# --- status, outputs, cancel ------------------------------------------------------------


async def test_status_reports_progress_timings_and_links(
    api: httpx.AsyncClient, auth: dict[str, str], completed_comic: str
) -> None:
    response = await api.get(f"/v1/comics/{completed_comic}", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed" and body["stage"] == "done"
    assert body["progress"] == 1.0
    assert set(body["timings"]) >= {"segment", "render", "compose", "package"}
    assert body["page_count"] == len(body["links"]["pages"]) >= 1
    assert body["links"]["pdf"] == f"/v1/comics/{completed_comic}.pdf"
    assert body["error"] is None and body["finished_at"]


async def test_pages_pdf_and_cbz_of_a_completed_comic(
    api: httpx.AsyncClient, auth: dict[str, str], completed_comic: str
) -> None:
    page = await api.get(f"/v1/comics/{completed_comic}/pages/1", headers=auth)
    assert page.status_code == 200
    assert page.headers["content-type"] == "image/png"
    assert page.content.startswith(PNG_MAGIC)
    assert "max-age" in page.headers["cache-control"]
    etag = page.headers["etag"]
    again = await api.get(
        f"/v1/comics/{completed_comic}/pages/1", headers={**auth, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""

    pdf = await api.get(f"/v1/comics/{completed_comic}.pdf", headers=auth)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert "attachment" in pdf.headers["content-disposition"]
    cbz = await api.get(f"/v1/comics/{completed_comic}.cbz", headers=auth)
    assert cbz.status_code == 200 and cbz.content.startswith(b"PK")

    missing = await api.get(f"/v1/comics/{completed_comic}/pages/999", headers=auth)
    assert missing.status_code == 404


async def test_cancel_a_queued_comic(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, db_session: Session
) -> None:
    from morpheus.queue.client import job_state

    comic_id = await submit(api, auth)
    response = await api.post(f"/v1/comics/{comic_id}/cancel", headers=auth)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert comics.get_comic(db_session, comic_id).status == "cancelled"  # type: ignore[union-attr]
    assert await job_state(settings, comic_id) == "unknown"
    # Cancelling again changes nothing; DELETE is the same operation.
    assert (await api.delete(f"/v1/comics/{comic_id}", headers=auth)).status_code == 202


async def test_cancel_a_finished_comic_is_409(
    api: httpx.AsyncClient, auth: dict[str, str], completed_comic: str
) -> None:
    response = await api.post(f"/v1/comics/{completed_comic}/cancel", headers=auth)
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]
