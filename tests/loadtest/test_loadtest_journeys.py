"""morpheus_loadtest.journeys: what each simulated user sends, against a made-up site
that answers as the service does (its forms, redirects, JSON and status pages)."""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass, field

from morpheus.api import comics
from morpheus.web import dashboard, storefront
from morpheus_loadtest import journeys

COMIC = "9b3f1f0c-1111-4111-8111-11111111111{}"


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - a simulated user's choices, repeatable


@dataclass
class Answer:
    status_code: int
    text: str = ""
    headers: dict = field(default_factory=dict)

    @property
    def content(self) -> bytes:
        return self.text.encode()

    def json(self):
        return json.loads(self.text)


class Site:
    """Answers each request as the service would; comics finish after `polls` polls."""

    def __init__(self, polls: int = 1) -> None:
        self.polls = polls
        self.calls: list[dict] = []
        self.numbers = itertools.count()
        self.seen: dict[str, int] = {}

    def url(self, site: str) -> str:
        return f"https://{site}.example"

    def status(self, comic_id: str) -> str:
        self.seen[comic_id] = self.seen.get(comic_id, 0) + 1
        return "completed" if self.seen[comic_id] > self.polls else "running"

    def request(self, method, site, path, template, expect=(200,), api=False, **kwargs):
        self.calls.append(
            {
                "method": method,
                "site": site,
                "path": path,
                "template": template,
                "expect": expect,
                "api": api,
                **kwargs,
            }
        )
        key = (method, site, template)
        if key == ("GET", "storefront", "/"):
            return Answer(200, '<input type="hidden" name="form_token" value="tok.mac">')
        if key == ("POST", "storefront", "/comics"):
            return Answer(303, headers={"Location": f"/comics/{COMIC.format(next(self.numbers))}"})
        if key == ("GET", "storefront", "/comics/{comic_id}"):
            comic_id = path.rsplit("/", 1)[1]
            status = self.status(comic_id)
            return Answer(200, f'<span class="badge badge-{status}">{status}</span>')
        if key == ("GET", "storefront", "/comics/{comic_id}/read/{number}"):
            comic_id, number = path.split("/")[2], int(path.rsplit("/", 1)[1])
            more = (
                f'<a rel="next" href="/comics/{comic_id}/read/{number + 1}">' if number < 2 else ""
            )
            return Answer(200, f'{more}<img src="/comics/{comic_id}/pages/{number}.png">')
        if key == ("POST", "api", "/v1/comics"):
            return Answer(202, json.dumps({"id": COMIC.format(next(self.numbers))}))
        if key == ("GET", "api", "/v1/comics/{comic_id}"):
            comic_id = path.rsplit("/", 1)[1]
            base = f"/v1/comics/{comic_id}"
            links = {"self": base, "pages": [f"{base}/pages/1", f"{base}/pages/2"]}
            links |= {"pdf": f"{base}.pdf", "cbz": f"{base}.cbz"}
            return Answer(200, json.dumps({"status": self.status(comic_id), "links": links}))
        if key == ("GET", "dashboard", "/login"):
            return Answer(200, '<input type="hidden" name="csrf_token" value="login-csrf">')
        if key == ("POST", "dashboard", "/login"):
            return Answer(303, headers={"Location": "/"})
        if key == ("GET", "dashboard", "/"):
            return Answer(
                200,
                '<input type="hidden" name="csrf_token" value="session-csrf">'
                f'<a href="/comics/{COMIC.format(7)}">a comic</a>',
            )
        if key == ("GET", "api", "/v1/comics/{comic_id}/pages/{number}"):
            return Answer(200, "png", headers={"ETag": '"page"'})
        return Answer(200, "")

    def sent(self, method: str, template: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method and c["template"] == template]


def walk(steps, count: int) -> None:
    for _ in range(count):
        next(steps)


def test_a_reader_sends_the_form_then_the_api_and_reads_both_comics():
    site, ledger = Site(polls=1), journeys.Ledger(clock=itertools.count(100).__next__)
    walk(journeys.reader(site, ledger, 3, rng(0)), 20)

    form = site.sent("POST", "/comics")[0]
    assert form["site"] == "storefront" and not form["api"]
    assert form["files"]["form_token"] == (None, "tok.mac")
    assert form["files"]["file"] == ("", b"", "application/octet-stream")  # an empty file input
    assert form["headers"] == {
        "Origin": "https://storefront.example",
        "Referer": "https://storefront.example/",
    }
    assert [c["path"] for c in site.sent("GET", "/static/{path}")] == [
        "/static/style.css",
        "/static/storefront.js",
    ]
    # Both pages of the form's comic, each with its image, then its PDF.
    first = COMIC.format(0)
    assert [c["path"] for c in site.sent("GET", "/comics/{comic_id}/read/{number}")][:2] == [
        f"/comics/{first}/read/1",
        f"/comics/{first}/read/2",
    ]
    assert site.sent("GET", "/comics/{comic_id}/pages/{number}.png")[0]["path"] == (
        f"/comics/{first}/pages/1.png"
    )
    assert site.sent("GET", "/comics/{comic_id}/comic.{kind}")[0]["path"] == (
        f"/comics/{first}/comic.pdf"
    )
    api = site.sent("POST", "/v1/comics")[0]
    assert api["api"] and api["json"]["text"].startswith("Chapter 1")
    assert "Idempotency-Key" in api["headers"]
    assert [c["path"] for c in site.sent("GET", "/v1/comics/{comic_id}/pages/{number}")] == [
        f"/v1/comics/{COMIC.format(1)}/pages/1",
        f"/v1/comics/{COMIC.format(1)}/pages/2",
    ]
    assert all(c["api"] for c in site.calls if c["site"] == "api")
    assert [(c["via"], c["status"]) for c in ledger.as_list()] == [
        ("form", "completed"),
        ("api", "completed"),
    ]
    assert all(c["finished_at"] > c["submitted_at"] for c in ledger.as_list())


def route_templates(router) -> set[str]:
    """A router's path templates without their converters ({comic_id:uuid} -> {comic_id})."""
    return {re.sub(r":\w+}", "}", route.path) for route in router.routes}


def test_request_names_are_the_services_route_templates():
    site = Site()
    walk(journeys.reader(site, journeys.Ledger(), 1, rng(0)), 30)
    walk(journeys.api_client(site, journeys.Ledger(), 2, rng(0)), 30)
    state = journeys.OperatorState()
    walk(journeys.operator(site, "op", "pw", state, rng(0)), 12)
    journeys.log_out(site, state)
    routes = {
        "storefront": route_templates(storefront.router) | {"/static/{path}"},
        "dashboard": route_templates(dashboard.router) | {"/static/{path}"},
        "api": route_templates(comics.router),
    }
    used = {(c["site"], c["template"]) for c in site.calls}
    assert {site for site, _ in used} == set(routes)
    assert {(s, t) for s, t in used if t not in routes[s]} == set()


def test_an_api_client_uploads_a_file_then_json_and_fetches_a_page_again_only_when_changed():
    site, ledger = Site(polls=0), journeys.Ledger()
    walk(journeys.api_client(site, ledger, 4, rng(1), submissions=2), 30)
    first, second = site.sent("POST", "/v1/comics")[:2]
    assert first["files"]["file"][0] == "novel.txt" and "json" not in first
    assert "json" in second and "files" not in second
    assert [
        c["path"].rsplit(".", 1)[1] for c in site.calls if c["template"].endswith((".pdf", ".cbz"))
    ][:2] == ["pdf", "cbz"]
    conditional = [c for c in site.calls if "If-None-Match" in (c.get("headers") or {})]
    assert conditional and all(c["expect"] == (200, 304) for c in conditional)
    assert len(ledger.comics) == 2


def test_an_operator_logs_in_with_the_forms_token_and_logs_out_with_the_sessions():
    site, state = Site(), journeys.OperatorState()
    walk(journeys.operator(site, "operator", "secret", state, rng(2)), 8)
    login = site.sent("POST", "/login")[0]
    assert login["data"] == {
        "csrf_token": "login-csrf",
        "username": "operator",
        "password": "secret",
    }
    assert login["headers"]["Origin"] == "https://dashboard.example"
    assert state.csrf == "session-csrf"
    assert site.sent("GET", "/comics/{comic_id}")[0]["path"] == f"/comics/{COMIC.format(7)}"
    assert {c["path"] for c in site.sent("GET", "/")} >= {"/", "/?status=queued"}
    journeys.log_out(site, state)
    assert site.sent("POST", "/logout")[0]["data"] == {"csrf_token": "session-csrf"}
    assert state.csrf is None
    journeys.log_out(site, state)  # once only
    assert len(site.sent("POST", "/logout")) == 1


class Refusing(Site):
    """A site whose API refuses (429) every submission: the browser answers None."""

    def request(self, method, site, path, template, expect=(200,), api=False, **kwargs):
        if (method, template) == ("POST", "/v1/comics"):
            self.calls.append({"method": method, "template": template})
            return None
        return super().request(method, site, path, template, expect, api, **kwargs)


def test_a_refused_submission_is_not_recorded_and_the_user_goes_on():
    site, ledger = Refusing(polls=0), journeys.Ledger()
    walk(journeys.api_client(site, ledger, 5, rng(3), submissions=2), 5)
    assert ledger.comics == {}
    assert len(site.sent("POST", "/v1/comics")) == 2


def test_the_ledger_keeps_the_first_finish():
    ledger = journeys.Ledger(clock=itertools.count(10).__next__)
    ledger.submitted("a", "api", 0)
    ledger.seen("a", "running")
    ledger.seen("a", "completed")
    ledger.seen("a", "failed")
    ledger.seen("unknown", "completed")
    assert ledger.as_list() == [
        {
            "id": "a",
            "via": "api",
            "user": 0,
            "submitted_at": 10,
            "status": "completed",
            "finished_at": 11,
        }
    ]
