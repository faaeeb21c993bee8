"""morpheus_loadtest.pages against the service's own templates, rendered as the sites
render them: the tokens, links, images and badges the simulated users rely on."""

from __future__ import annotations

import types
import uuid
from datetime import UTC, datetime

import pytest
from morpheus.web.templating import make_templates
from morpheus_loadtest.pages import read_page

ENV = make_templates().env
COMIC_ID = uuid.UUID("9b3f1f0c-1111-4111-8111-111111111111")


def render(name: str, **context) -> str:
    return ENV.get_template(name).render(version="test", notice=None, **context)


def comic(status: str, **fields) -> types.SimpleNamespace:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    values = {
        "id": COMIC_ID,
        "title": "The Last Lamp",
        "status": status,
        "stage": "done",
        "word_count": 120,
        "page_count": 3,
        "progress": 1.0,
        "error": None,
        "attempts": 1,
        "created_at": now,
        "started_at": now,
        "finished_at": now,
        "timings": {},
        "duration_seconds": 3.0,
    }
    return types.SimpleNamespace(**{**values, **fields})


def test_the_storefront_form_carries_its_token():
    html = render(
        "storefront/index.html",
        site="storefront",
        page_formats={"a4": "A4"},
        max_upload_mib=10,
        form={"title": "", "text": "", "page_format": "a4"},
        form_token="nonce.mac",
        error=None,
    )
    assert read_page(html).hidden == {"form_token": "nonce.mac"}


@pytest.mark.parametrize("status", ["queued", "running", "completed", "failed", "cancelled"])
def test_the_status_page_shows_the_status(status):
    html = render(
        "storefront/status.html",
        site="storefront",
        comic=comic(status),
        refresh=3 if status in ("queued", "running") else None,
        percent=40,
        done=status == "completed",
    )
    page = read_page(html)
    assert page.status == status
    if status == "completed":
        assert f"/comics/{COMIC_ID}/read/1" in page.hrefs()
        assert f"/comics/{COMIC_ID}/comic.pdf" in page.hrefs()


def test_the_reader_links_the_next_page_and_shows_its_image():
    html = render(
        "storefront/read.html",
        site="storefront",
        comic=comic("completed"),
        page=types.SimpleNamespace(width=1240, height=1754),
        number=2,
        total=3,
        previous=1,
        next=3,
    )
    page = read_page(html)
    assert page.link("next") == f"/comics/{COMIC_ID}/read/3"
    assert page.link("prev") == f"/comics/{COMIC_ID}/read/1"
    assert page.images == [f"/comics/{COMIC_ID}/pages/2.png"]
    last = read_page(html.replace('rel="next"', 'rel="other"'))
    assert last.link("next") is None


def test_the_login_form_carries_its_csrf_token():
    html = render("dashboard/login.html", site="dashboard", csrf_token="csrf-1", error=None)
    assert read_page(html).hidden == {"csrf_token": "csrf-1"}


def test_the_jobs_page_links_its_comics_and_the_log_out_form():
    html = render(
        "dashboard/jobs.html",
        site="dashboard",
        user=types.SimpleNamespace(username="operator"),
        csrf_token="csrf-2",
        counts={"waiting": 1},
        workers=[],
        total=1,
        comics=[comic("queued")],
        statuses=["queued"],
        status=None,
        page=1,
        pages=1,
    )
    page = read_page(html)
    assert page.hidden["csrf_token"] == "csrf-2"
    assert page.comic_ids() == [str(COMIC_ID)]


def test_read_page_on_plain_markup():
    page = read_page(
        '<input type="hidden" name="a" value="1"><input name="b" value="2">'
        '<a href="/comics/9b3f1f0c-1111-4111-8111-111111111111">x</a><a href="/x" rel="next">n</a>'
        '<span class="badge badge-running">running</span><img src="/i.png">'
    )
    assert page.hidden == {"a": "1"}
    assert page.comic_ids() == ["9b3f1f0c-1111-4111-8111-111111111111"]
    assert page.link("next") == "/x"
    assert page.status == "running"
    assert page.images == ["/i.png"]
    assert read_page("<p>nothing</p>").status is None
