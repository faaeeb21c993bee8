"""Dashboard sessions kept server-side in Redis: they end at logout, at a password change,
and when an operator ends them (on the dashboard or with ``morpheus sessions``); with
Redis down the dashboard refuses with a 503 page, never a 500."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from api_helpers import DESK, TEST_PASSWORD, client_for
from fastapi import FastAPI
from morpheus.db import users
from morpheus.services.sessions import COOKIE_NAME
from morpheus.settings import Settings
from server_helpers import free_port
from sqlalchemy.orm import Session
from test_dashboard import csrf_of, log_in

MORPHEUS = shutil.which("morpheus", path=str(Path(sys.executable).parent)) or "morpheus"
SESSION_ID_RE = re.compile(r'data-session-id="([0-9a-f]{32})"')
NEW_PASSWORD = "a-brand-new-password-5678"


def cookie_client(app: FastAPI, cookie: str, addr: str = "203.0.113.7") -> httpx.AsyncClient:
    """A second browser that presents a saved session cookie."""
    client = client_for(app, DESK, addr=addr)
    client.cookies.set(COOKIE_NAME, cookie, domain="dashboard.morpheus.localhost")
    return client


def make_operator(db_session: Session) -> str:
    username = f"op-{uuid.uuid4().hex[:8]}"
    users.create_user(db_session, username, TEST_PASSWORD)
    return username


@asynccontextmanager
async def logged_in(
    app: FastAPI, username: str, addr: str = "203.0.113.7"
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, DESK, addr=addr) as client:
        response = await log_in(client, username, TEST_PASSWORD)
        assert response.status_code == 303, response.text
        yield client


async def works(app: FastAPI, cookie: str) -> bool:
    async with cookie_client(app, cookie) as client:
        status = (await client.get("/")).status_code
    assert status in (200, 401)
    return status == 200


# --- the cookie and logout --------------------------------------------------------------


async def test_the_session_cookie_is_an_opaque_id_with_safe_flags(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    async with client_for(app, DESK) as desk:
        response = await log_in(desk, *operator)
        cookie = response.headers["set-cookie"]
        value = desk.cookies[COOKIE_NAME]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    # A random id: nothing readable (no user id, no signature over data) in it.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value), value
    # Behind the HTTPS proxy (127.0.0.1 is trusted): the browser keeps a Secure cookie.
    https_desk = DESK.replace("http://", "https://")
    async with client_for(app, https_desk, addr="127.0.0.1") as proxied:
        form = await proxied.get("/login", headers={"X-Forwarded-Proto": "https"})
        secure = await proxied.post(
            "/login",
            data={
                "username": operator[0],
                "password": operator[1],
                "csrf_token": csrf_of(form.text),
            },
            headers={"X-Forwarded-Proto": "https"},
        )
    assert secure.status_code == 303
    assert "Secure" in secure.headers["set-cookie"]


async def test_a_cookie_saved_before_logout_no_longer_works(
    app: FastAPI, operator: tuple[str, str]
) -> None:
    async with client_for(app, DESK) as desk:
        await log_in(desk, *operator)
        saved = desk.cookies[COOKIE_NAME]
        assert await works(app, saved)
        page = await desk.get("/")
        logout = await desk.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert logout.status_code == 303
    assert not await works(app, saved)


# --- password change --------------------------------------------------------------------


async def test_a_password_change_ends_every_session_of_that_user(
    app: FastAPI, db_session: Session
) -> None:
    username, bystander = make_operator(db_session), make_operator(db_session)
    async with (
        logged_in(app, username) as changer,
        logged_in(app, username, addr="198.51.100.20") as other,
        logged_in(app, bystander) as unrelated,
    ):
        before = changer.cookies[COOKIE_NAME]
        other_cookie = other.cookies[COOKIE_NAME]

        form = await changer.get("/account/password")
        assert form.status_code == 200
        assert '<label for="current_password">' in form.text
        token = csrf_of(form.text)

        # A wrong current password changes nothing, and no session ends.
        wrong = await changer.post(
            "/account/password",
            data={
                "current_password": "not-the-password",
                "new_password": NEW_PASSWORD,
                "repeat_password": NEW_PASSWORD,
                "csrf_token": token,
            },
        )
        assert wrong.status_code == 400
        assert "current password is not right" in wrong.text
        # Nor do two new passwords that differ, or one too short.
        differ = await changer.post(
            "/account/password",
            data={
                "current_password": TEST_PASSWORD,
                "new_password": NEW_PASSWORD,
                "repeat_password": NEW_PASSWORD + "x",
                "csrf_token": token,
            },
        )
        assert differ.status_code == 400 and "do not match" in differ.text
        short = await changer.post(
            "/account/password",
            data={
                "current_password": TEST_PASSWORD,
                "new_password": "short",
                "repeat_password": "short",
                "csrf_token": token,
            },
        )
        assert short.status_code == 400 and "at least 8 characters" in short.text
        assert await works(app, other_cookie)
        # Without the form's CSRF token nothing happens either.
        forged = await changer.post(
            "/account/password",
            data={
                "current_password": TEST_PASSWORD,
                "new_password": NEW_PASSWORD,
                "repeat_password": NEW_PASSWORD,
            },
        )
        assert forged.status_code == 403

        changed = await changer.post(
            "/account/password",
            data={
                "current_password": TEST_PASSWORD,
                "new_password": NEW_PASSWORD,
                "repeat_password": NEW_PASSWORD,
                "csrf_token": token,
            },
        )
        assert changed.status_code == 303
        # The browser that changed it goes on, in a session issued anew ...
        after = changer.cookies[COOKIE_NAME]
        assert after != before
        assert (await changer.get(changed.headers["location"])).status_code == 200
        # ... every other session of the user, and the old cookie, are over.
        assert not await works(app, before)
        assert not await works(app, other_cookie)
        assert (await other.get("/")).status_code == 401
        # Another user's session is not touched.
        assert (await unrelated.get("/")).status_code == 200

    async with client_for(app, DESK) as fresh:
        assert (await log_in(fresh, username, TEST_PASSWORD)).status_code == 401
    async with client_for(app, DESK) as fresh:
        response = await log_in(fresh, username, NEW_PASSWORD)
        assert response.status_code == 303


async def test_a_password_set_elsewhere_ends_the_sessions_too(
    app: FastAPI, db_session: Session
) -> None:
    username = make_operator(db_session)
    async with logged_in(app, username) as desk:
        assert (await desk.get("/")).status_code == 200
        users.set_user_password(db_session, username, NEW_PASSWORD)
        assert (await desk.get("/")).status_code == 401


# --- operators list and end sessions ----------------------------------------------------


async def test_an_operator_lists_sessions_and_ends_one(app: FastAPI, db_session: Session) -> None:
    admin, other = make_operator(db_session), make_operator(db_session)
    async with (
        logged_in(app, admin, addr="198.51.100.1") as mine,
        logged_in(app, other, addr="198.51.100.2") as theirs,
    ):
        page = await mine.get("/sessions")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        html = page.text
        rows = {
            match[1]: html[match.end() : html.find("</tr>", match.end())]
            for match in SESSION_ID_RE.finditer(html)
        }
        assert len(rows) >= 2
        own_row = next(row for row in rows.values() if admin in row)
        other_id, other_row = next((i, row) for i, row in rows.items() if other in row)
        assert "198.51.100.1" in own_row and "this session" in own_row
        assert "198.51.100.2" in other_row
        assert other_row.count("UTC") == 2  # created, last seen
        # The listing never shows what is in a cookie.
        assert mine.cookies[COOKIE_NAME] not in html
        assert theirs.cookies[COOKIE_NAME] not in html

        token = csrf_of(html)
        forged = await mine.post(f"/sessions/{other_id}/end", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert (await theirs.get("/")).status_code == 200

        ended = await mine.post(f"/sessions/{other_id}/end", data={"csrf_token": token})
        assert ended.status_code == 303
        assert ended.headers["location"] == "/sessions?notice=session-ended"
        assert (await theirs.get("/")).status_code == 401
        listed = await mine.get(ended.headers["location"])
        assert "The session was ended." in listed.text
        assert other_id not in listed.text

        gone = await mine.post(f"/sessions/{other_id}/end", data={"csrf_token": token})
        assert gone.status_code == 404
    async with client_for(app, DESK) as anonymous:
        assert (await anonymous.get("/sessions")).status_code == 401


# --- the command line -------------------------------------------------------------------


def cli(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    secrets = tmp_path / "cli-secrets"
    secrets.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MORPHEUS_")}
    env.update(
        MORPHEUS_SECRETS_DIR=str(secrets),
        MORPHEUS_DATABASE_URL=settings.database_url,
        MORPHEUS_REDIS_URL=settings.redis_url,
        MORPHEUS_QUEUE_NAME=settings.queue_name,
        MORPHEUS_SECRET_KEY=settings.secret_key.get_secret_value(),
        MORPHEUS_ENVIRONMENT="test",
    )
    return subprocess.run(
        [MORPHEUS, "sessions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_sessions_from_the_command_line(
    app: FastAPI, db_session: Session, settings: Settings, tmp_path: Path
) -> None:
    first, second = make_operator(db_session), make_operator(db_session)
    async with (
        logged_in(app, first, addr="198.51.100.11") as a,
        logged_in(app, first, addr="198.51.100.12") as b,
        logged_in(app, second, addr="198.51.100.13") as c,
    ):
        listed = cli(settings, tmp_path, "list")
        assert listed.returncode == 0, listed.stderr
        lines = [line for line in listed.stdout.splitlines() if line.strip()]
        assert lines[0].split() == ["ID", "USER", "CREATED", "LAST", "SEEN", "ADDRESS"]
        by_address = {line.split()[-1]: line.split() for line in lines[1:]}
        assert by_address["198.51.100.11"][1] == first
        assert by_address["198.51.100.13"][1] == second
        c_id = by_address["198.51.100.13"][0]

        ended = cli(settings, tmp_path, "end", c_id)
        assert ended.returncode == 0, ended.stderr
        assert f"ended session {c_id}" in ended.stdout
        assert (await c.get("/")).status_code == 401
        assert (await a.get("/")).status_code == 200

        unknown = cli(settings, tmp_path, "end", c_id)
        assert unknown.returncode == 1
        assert "no session" in unknown.stderr and "Traceback" not in unknown.stderr

        by_user = cli(settings, tmp_path, "end", "--user", first)
        assert by_user.returncode == 0, by_user.stderr
        assert f"ended 2 session(s) of {first}" in by_user.stdout
        assert (await a.get("/")).status_code == 401
        assert (await b.get("/")).status_code == 401

        usage = cli(settings, tmp_path, "end")
        assert usage.returncode == 2
        both = cli(settings, tmp_path, "end", c_id, "--user", first)
        assert both.returncode == 2


def test_sessions_command_with_redis_down(settings: Settings, tmp_path: Path) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    result = cli(down, tmp_path, "list")
    assert result.returncode == 1
    assert "Redis is not reachable" in result.stderr and "Traceback" not in result.stderr


# --- Redis down: 503 pages, never a 500 -------------------------------------------------


async def test_with_redis_down_the_dashboard_refuses_with_a_503_page(
    app_factory: Callable[..., FastAPI], db_session: Session
) -> None:
    username = make_operator(db_session)
    up = app_factory()
    async with logged_in(up, username) as desk:
        cookie = desk.cookies[COOKIE_NAME]
    broken = f"redis://127.0.0.1:{free_port()}/0"
    # A logged-in operator whose session cannot be looked up: 503, not in, not a 500.
    down = app_factory(redis_url=broken)
    async with cookie_client(down, cookie) as desk:
        for path in ("/", "/sessions"):
            response = await desk.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["retry-after"] == "30"
            assert "sessions cannot be checked" in response.text
    # Logging in with the throttle switched off still fails closed: no session can be kept.
    unthrottled = app_factory(redis_url=broken, rate_limit_enabled=False)
    async with client_for(unthrottled, DESK) as desk:
        response = await log_in(desk, username, TEST_PASSWORD)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "Temporarily unavailable" in response.text
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("path", ["/sessions", "/account/password"])
async def test_new_pages_need_a_login(desk: httpx.AsyncClient, path: str) -> None:
    response = await desk.get(path)
    assert response.status_code == 401
    assert 'action="/login"' in response.text
