"""The dashboard: login, session cookie, CSRF, jobs list, retry and cancel, logout."""

from __future__ import annotations

import re
import uuid

import httpx
from api_helpers import DESK, NOVEL, client_for
from fastapi import FastAPI
from morpheus.db import comics
from morpheus.services.sessions import COOKIE_NAME
from morpheus.settings import Settings
from sqlalchemy.orm import Session

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def log_in(desk: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = await desk.get("/login")
    return await desk.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(form.text)},
    )


async def test_pages_need_a_login_and_show_no_data(
    desk: httpx.AsyncClient, db_session: Session
) -> None:
    comic = comics.create_comic(db_session, title="Secret Title", source_text=NOVEL)
    for path in ("/", f"/comics/{comic.id}", "/?status=failed"):
        response = await desk.get(path)
        assert response.status_code == 401, path
        assert "Secret Title" not in response.text
        assert 'action="/login"' in response.text
    for action in ("retry", "cancel"):
        response = await desk.post(f"/comics/{comic.id}/{action}", data={"csrf_token": "x"})
        assert response.status_code == 401
    assert comics.get_comic(db_session, comic.id).status == "queued"  # type: ignore[union-attr]


async def test_login_page_sets_a_safe_session_cookie(desk: httpx.AsyncClient) -> None:
    response = await desk.get("/login")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP in this test
    assert response.headers["cache-control"] == "no-store"
    assert '<label for="username">' in response.text and '<label for="password">' in response.text


async def test_cookie_is_secure_behind_an_https_proxy(app: FastAPI) -> None:
    # 127.0.0.1 is a trusted proxy in the test settings: its X-Forwarded-Proto counts.
    async with client_for(app, DESK, addr="127.0.0.1") as desk:
        response = await desk.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["set-cookie"]
    # HSTS is nginx's (the edge ends TLS), never the app's: see test_headers.py.
    assert "strict-transport-security" not in response.headers


async def test_login_with_wrong_password_is_401(
    desk: httpx.AsyncClient, operator: tuple[str, str]
) -> None:
    response = await log_in(desk, operator[0], "wrong-password-123")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert (await desk.get("/")).status_code == 401


async def test_login_without_or_with_a_foreign_csrf_token_is_403(
    desk: httpx.AsyncClient, operator: tuple[str, str], app: FastAPI
) -> None:
    await desk.get("/login")
    username, password = operator
    missing = await desk.post("/login", data={"username": username, "password": password})
    assert missing.status_code == 403
    # A token from another browser's session does not fit this session.
    async with client_for(app, DESK) as other:
        foreign = csrf_of((await other.get("/login")).text)
    wrong = await desk.post(
        "/login", data={"username": username, "password": password, "csrf_token": foreign}
    )
    assert wrong.status_code == 403
    assert (await desk.get("/")).status_code == 401


async def test_login_list_cancel_retry_logout(
    desk: httpx.AsyncClient,
    operator: tuple[str, str],
    db_session: Session,
    settings: Settings,
) -> None:
    from morpheus.queue.client import job_state

    queued = comics.create_comic(db_session, title="Queued One", source_text=NOVEL)
    failed = comics.create_comic(db_session, title="Failed One", source_text=NOVEL)
    comics.fail_comic(db_session, failed.id, "renderer exploded")

    login = await log_in(desk, *operator)
    assert login.status_code == 303 and login.headers["location"] == "/"

    jobs = await desk.get("/")
    assert jobs.status_code == 200
    html = jobs.text
    assert "Queued One" in html and "Failed One" in html and "renderer exploded" in html
    assert "Live workers" in html and "waiting" in html
    token = csrf_of(html)

    # CSRF is checked on every form, also when logged in.
    refused = await desk.post(f"/comics/{queued.id}/cancel", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert comics.get_comic(db_session, queued.id).status == "queued"  # type: ignore[union-attr]

    cancelled = await desk.post(f"/comics/{queued.id}/cancel", data={"csrf_token": token})
    assert cancelled.status_code == 303
    assert comics.get_comic(db_session, queued.id).status == "cancelled"  # type: ignore[union-attr]

    retried = await desk.post(f"/comics/{failed.id}/retry", data={"csrf_token": token})
    assert retried.status_code == 303
    assert retried.headers["location"] == f"/comics/{failed.id}?notice=retried"
    assert comics.get_comic(db_session, failed.id).status == "queued"  # type: ignore[union-attr]
    assert await job_state(settings, str(failed.id)) == "waiting"

    detail = await desk.get(retried.headers["location"])
    assert detail.status_code == 200 and "queued again" in detail.text

    # Retrying again is harmless (still queued); a completed comic cannot be retried.
    again = await desk.post(f"/comics/{failed.id}/retry", data={"csrf_token": token})
    assert again.status_code == 303
    done = comics.create_comic(db_session, title="Done One", source_text=NOVEL)
    comics.start_comic(db_session, done.id)
    comics.complete_comic(db_session, done.id, 1)
    conflict = await desk.post(f"/comics/{done.id}/retry", data={"csrf_token": token})
    assert conflict.status_code == 409
    assert "completed" in conflict.text
    unknown = await desk.post(f"/comics/{uuid.uuid4()}/retry", data={"csrf_token": token})
    assert unknown.status_code == 404

    filtered = await desk.get("/?status=cancelled")
    assert "Queued One" in filtered.text and "Failed One" not in filtered.text

    logout = await desk.post("/logout", data={"csrf_token": token})
    assert logout.status_code == 303
    assert (await desk.get("/")).status_code == 401


async def test_tampered_session_cookie_is_ignored(
    desk: httpx.AsyncClient, operator: tuple[str, str]
) -> None:
    await log_in(desk, *operator)
    value = desk.cookies[COOKIE_NAME]
    desk.cookies.clear()
    desk.cookies.set(COOKIE_NAME, value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert (await desk.get("/")).status_code == 401


async def test_deactivated_user_loses_access(
    desk: httpx.AsyncClient, operator: tuple[str, str], db_session: Session
) -> None:
    await log_in(desk, *operator)
    assert (await desk.get("/")).status_code == 200
    from morpheus.db.models import User
    from sqlalchemy import update

    db_session.execute(update(User).where(User.username == operator[0]).values(is_active=False))
    db_session.commit()
    assert (await desk.get("/")).status_code == 401


async def test_login_attempts_are_throttled_per_address(
    desk: httpx.AsyncClient, operator: tuple[str, str]
) -> None:
    token = csrf_of((await desk.get("/login")).text)
    # A name per attempt: the per-account lockout (test_lockout.py) does not come into it.
    codes = [
        (
            await desk.post(
                "/login",
                data={"username": f"guess-{n}", "password": "wrong-guess-0", "csrf_token": token},
            )
        ).status_code
        for n in range(11)
    ]
    assert codes == [401] * 10 + [429]
    # Even the right password waits for the window to pass.
    right = await desk.post(
        "/login", data={"username": operator[0], "password": operator[1], "csrf_token": token}
    )
    assert right.status_code == 429 and right.headers["retry-after"]
