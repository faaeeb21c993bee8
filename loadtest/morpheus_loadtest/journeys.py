"""What each kind of simulated user does, as a generator: each ``yield`` ends one step
(a page read, a form sent), after which the user thinks for 1-3 s before the next.

- A reader opens the storefront, sends a novel through its form (the form's one-time
  token, the visitor cookie, the browser's Origin), follows the comic's status page as
  its refresh does, reads it page by page, downloads its PDF; then sends a novel
  through the API with its own key (JSON, an Idempotency-Key), follows it, reads its
  pages and PDF; then goes on browsing: the storefront, its comics' pages.
- An API client sends novels through the API (a file upload, then JSON), follows each,
  fetches its pages, PDF and CBZ, then keeps checking its comics, fetching a page again
  only when it changed (If-None-Match, as a well-behaved client does).
- An operator logs in to the dashboard (its CSRF token and login form), then reads the
  jobs, one comic, the queued jobs and the sessions, and logs out when it stops.

Request names are the site and the service's route template (``api
/v1/comics/{comic_id}``), as the service's own metrics label them. The HTTP is a
:class:`Browser` (loadtest/morpheus_loadtest/client.py in Locust; a fake in the tests).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .novels import novel
from .pages import FINAL_STATUSES, Page, read_page

Steps = Generator[None, None, Any]

FORM_ORIGIN_HEADERS = ("Origin", "Referer")


class Response(Protocol):
    status_code: int
    text: str
    content: bytes
    headers: Any

    def json(self) -> Any: ...


class Browser(Protocol):
    """One simulated user's HTTP: its cookies, its client address, its API key."""

    def request(
        self,
        method: str,
        site: str,
        path: str,
        template: str,
        expect: tuple[int, ...] = (200,),
        api: bool = False,
        **kwargs: Any,
    ) -> Response | None: ...

    def url(self, site: str) -> str: ...


@dataclass
class Comic:
    id: str
    via: str  # "form" or "api"
    user: int
    submitted_at: float
    status: str = "queued"
    finished_at: float | None = None

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "via": self.via,
            "user": self.user,
            "submitted_at": self.submitted_at,
            "status": self.status,
            "finished_at": self.finished_at,
        }


@dataclass
class Ledger:
    """Every comic the run submitted, and when each was seen finished."""

    clock: Callable[[], float] = time.time
    comics: dict[str, Comic] = field(default_factory=dict)

    def submitted(self, comic_id: str, via: str, user: int) -> Comic:
        comic = self.comics.setdefault(comic_id, Comic(comic_id, via, user, self.clock()))
        return comic

    def seen(self, comic_id: str, status: str) -> None:
        comic = self.comics.get(comic_id)
        if comic is None or comic.finished_at is not None:
            return
        comic.status = status
        if status in FINAL_STATUSES:
            comic.finished_at = self.clock()

    def as_list(self) -> list[dict]:
        return [c.as_dict() for c in self.comics.values()]


def page(b: Browser, site: str, path: str, template: str) -> Page | None:
    answer = b.request("GET", site, path, template)
    return read_page(answer.text) if answer is not None else None


def assets(b: Browser, site: str, names: tuple[str, ...]) -> None:
    """A first visit's static files (a browser keeps them afterwards)."""
    for name in names:
        b.request("GET", site, f"/static/{name}", "/static/{path}")


def form_headers(b: Browser, site: str, path: str) -> dict[str, str]:
    """What a browser sends with a form of `site`: the page's origin."""
    return {"Origin": b.url(site), "Referer": b.url(site) + path}


# --- the storefront ------------------------------------------------------------------------


def submit_form(b: Browser, ledger: Ledger, user: int, seed: int) -> Steps:
    """Open the storefront and send a novel through its form; the comic's id (or None)."""
    home = None
    while home is None or "form_token" not in home.hidden:
        home = page(b, "storefront", "/", "/")
        if home is not None:
            assets(b, "storefront", ("style.css", "storefront.js"))
        yield
    title, text = novel(seed)
    fields = {
        "form_token": (None, home.hidden["form_token"]),
        "title": (None, title),
        "text": (None, text),
        # An empty file input, as a browser sends it.
        "file": ("", b"", "application/octet-stream"),
        "page_format": (None, "a4"),
    }
    answer = b.request(
        "POST",
        "storefront",
        "/comics",
        "/comics",
        expect=(303,),
        files=fields,
        headers=form_headers(b, "storefront", "/"),
    )
    if answer is None:
        return None
    location = answer.headers.get("Location", "")
    comic_id = location.rstrip("/").rsplit("/", 1)[-1]
    ledger.submitted(comic_id, "form", user)
    return comic_id


def follow_storefront(b: Browser, ledger: Ledger, comic_id: str) -> Steps:
    """The status page, as its refresh reloads it, until the comic is finished."""
    while True:
        status = page(b, "storefront", f"/comics/{comic_id}", "/comics/{comic_id}")
        if status is not None and status.status in FINAL_STATUSES:
            ledger.seen(comic_id, status.status)
            return status.status == "completed"
        yield


def read_storefront(b: Browser, comic_id: str, download: bool = True) -> Steps:
    """Page by page through the reader (each page and its image), then the PDF."""
    path = f"/comics/{comic_id}/read/1"
    while path:
        reader = page(b, "storefront", path, "/comics/{comic_id}/read/{number}")
        if reader is None:
            break
        for image in reader.images:
            b.request("GET", "storefront", image, "/comics/{comic_id}/pages/{number}.png")
        yield
        path = reader.link("next") or ""
    if download:
        b.request(
            "GET", "storefront", f"/comics/{comic_id}/comic.pdf", "/comics/{comic_id}/comic.{kind}"
        )
        yield


# --- the API -------------------------------------------------------------------------------


def submit_api(b: Browser, ledger: Ledger, user: int, seed: int, upload: bool = False) -> Steps:
    """Send a novel through the API (JSON, or a .txt upload); the comic's id (or None)."""
    title, text = novel(seed)
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if upload:
        body: dict[str, Any] = {
            "files": {
                "title": (None, title),
                "file": ("novel.txt", text.encode("utf-8"), "text/plain"),
                "page_format": (None, "a5"),
            }
        }
    else:
        body = {"json": {"title": title, "text": text}}
    answer = b.request(
        "POST", "api", "/v1/comics", "/v1/comics", expect=(202,), api=True, headers=headers, **body
    )
    comic_id = str(answer.json()["id"]) if answer is not None else None
    if comic_id is not None:
        ledger.submitted(comic_id, "api", user)
    yield
    return comic_id


def follow_api(b: Browser, ledger: Ledger, comic_id: str) -> Steps:
    """The comic's status until it is finished; its last status document."""
    while True:
        answer = b.request(
            "GET", "api", f"/v1/comics/{comic_id}", "/v1/comics/{comic_id}", api=True
        )
        if answer is not None:
            status = answer.json()
            if status.get("status") in FINAL_STATUSES:
                ledger.seen(comic_id, status["status"])
                return status
        yield


def read_api(b: Browser, status: dict, kinds: tuple[str, ...] = ("pdf",)) -> Steps:
    """Every page of a finished comic, then its archives."""
    for link in status.get("links", {}).get("pages", []):
        b.request("GET", "api", link, "/v1/comics/{comic_id}/pages/{number}", api=True)
        yield
    for kind in kinds:
        link = status.get("links", {}).get(kind)
        if link:
            b.request("GET", "api", link, f"/v1/comics/{{comic_id}}.{kind}", api=True)
            yield


# --- the users -----------------------------------------------------------------------------


def reader(b: Browser, ledger: Ledger, user: int, rng: random.Random) -> Steps:
    finished: list[str] = []
    comic_id = yield from submit_form(b, ledger, user, seed=user * 10 + 1)
    if comic_id and (yield from follow_storefront(b, ledger, comic_id)):
        yield from read_storefront(b, comic_id)
        finished.append(comic_id)
    comic_id = yield from submit_api(b, ledger, user, seed=user * 10 + 2)
    if comic_id:
        status = yield from follow_api(b, ledger, comic_id)
        if status.get("status") == "completed":
            yield from read_api(b, status)
    while True:  # browsing on: the storefront, a page of a comic already made
        page(b, "storefront", "/", "/")
        yield
        if finished:
            comic_id = rng.choice(finished)
            yield from read_storefront(b, comic_id, download=False)


def api_client(
    b: Browser, ledger: Ledger, user: int, rng: random.Random, submissions: int = 2
) -> Steps:
    made: list[dict] = []
    for n in range(submissions):
        comic_id = yield from submit_api(b, ledger, user, seed=user * 10 + 5 + n, upload=n == 0)
        if not comic_id:
            continue
        status = yield from follow_api(b, ledger, comic_id)
        if status.get("status") == "completed":
            yield from read_api(b, status, kinds=("pdf", "cbz"))
            made.append(status)
    etags: dict[str, str] = {}
    while True:  # checking on its comics
        if not made:
            yield
            continue
        status = rng.choice(made)
        b.request("GET", "api", status["links"]["self"], "/v1/comics/{comic_id}", api=True)
        yield
        pages = status["links"]["pages"]
        if pages:
            link = rng.choice(pages)
            headers = {"If-None-Match": etags[link]} if link in etags else {}
            answer = b.request(
                "GET",
                "api",
                link,
                "/v1/comics/{comic_id}/pages/{number}",
                expect=(200, 304),
                api=True,
                headers=headers,
            )
            if answer is not None and answer.headers.get("ETag"):
                etags[link] = answer.headers["ETag"]
            yield


@dataclass
class OperatorState:
    csrf: str | None = None  # the logged-in session's token (the log-out form's)


def operator(
    b: Browser, username: str, password: str, state: OperatorState, rng: random.Random
) -> Steps:
    while state.csrf is None:
        login = page(b, "dashboard", "/login", "/login")
        if login is not None:
            assets(b, "dashboard", ("style.css",))
        yield
        if login is None or "csrf_token" not in login.hidden:
            continue
        answer = b.request(
            "POST",
            "dashboard",
            "/login",
            "/login",
            expect=(303,),
            data={
                "csrf_token": login.hidden["csrf_token"],
                "username": username,
                "password": password,
            },
            headers=form_headers(b, "dashboard", "/login"),
        )
        yield
        if answer is None:
            continue
        jobs = page(b, "dashboard", "/", "/")
        if jobs is not None:
            state.csrf = jobs.hidden.get("csrf_token")
        yield
    while True:
        jobs = page(b, "dashboard", "/", "/")
        yield
        ids = jobs.comic_ids() if jobs is not None else []
        if ids:
            page(b, "dashboard", f"/comics/{rng.choice(ids)}", "/comics/{comic_id}")
            yield
        page(b, "dashboard", "/?status=queued", "/")
        yield
        page(b, "dashboard", "/sessions", "/sessions")
        yield


def log_out(b: Browser, state: OperatorState) -> None:
    if state.csrf is None:
        return
    b.request(
        "POST",
        "dashboard",
        "/logout",
        "/logout",
        expect=(303,),
        data={"csrf_token": state.csrf},
        headers=form_headers(b, "dashboard", "/"),
    )
    state.csrf = None
