"""The operators' dashboard: log in, list jobs, retry or cancel them, watch the queue;
list and end sessions, change one's password."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from morpheus.db.models import User
from morpheus.services.accounts import active_user, authenticate_user, set_password
from morpheus.services.comics import OPERATOR, cancel_comic, get_comic, list_comics, retry_comic
from morpheus.services.context import AppContext, get_context
from morpheus.services.overview import queue_overview
from morpheus.services.ratelimit import AccountLockout, Lockout
from morpheus.services.request_limits import (
    MINUTE,
    client_address,
    enforce_limit,
    fail_closed,
    limit_by_address,
)
from morpheus.services.sessions import Session, SessionStore, csrf_matches, password_mark
from morpheus.services.uploads import limited_receive
from morpheus.web.csrf import DASHBOARD_CROSS_SITE_MESSAGE, cross_site
from morpheus.web.pages import render

router = APIRouter(dependencies=[Depends(limit_by_address)])

Context = Annotated[AppContext, Depends(get_context)]

FORM_LIMIT_BYTES = 16 * 1024
PAGE_SIZE = 50
LOGIN_ATTEMPTS_PER_MINUTE = 10
STATUSES = ["queued", "running", "completed", "failed", "cancelled"]
StatusFilter = Literal["queued", "running", "completed", "failed", "cancelled"]
NO_STORE = {"Cache-Control": "no-store"}
NOTICES = {
    "retried": "The comic was queued again.",
    "cancelled": "The comic was cancelled.",
    "logged-out": "You are logged out.",
    "session-ended": "The session was ended.",
    "password-changed": "Your password was changed; every other session of yours was ended.",
}


def store(request: Request) -> SessionStore:
    return request.app.state.sessions  # type: ignore[no-any-return]


async def load_session(request: Request) -> Session:
    return await store(request).load(request)


SessionDep = Annotated[Session, Depends(load_session)]


async def small_form(request: Request) -> FormData:
    """The posted form, refused with 413 past a few KiB."""
    limited = Request(request.scope, receive=limited_receive(request, FORM_LIMIT_BYTES))
    return await limited.form(max_files=0, max_fields=10, max_part_size=FORM_LIMIT_BYTES)


async def checked_form(request: Request, session: SessionDep) -> FormData:
    """The posted form after its origin (another site's page: 403, before it is read) and
    its CSRF token (against the session: 403) were checked."""
    if cross_site(request):
        raise HTTPException(status_code=403, detail=DASHBOARD_CROSS_SITE_MESSAGE)
    form = await small_form(request)
    token = form.get("csrf_token")
    if not csrf_matches(session, token if isinstance(token, str) else None):
        raise HTTPException(
            status_code=403,
            detail="The form has expired or did not come from this dashboard; reload and retry.",
        )
    return form


def login_page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    response = render(
        request,
        "dashboard/login.html",
        {"csrf_token": session.csrf, "error": error, "notice": NOTICES.get(_notice(request))},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )
    store(request).save_login_form(request, response, session)
    return response


def _notice(request: Request) -> str:
    return request.query_params.get("notice", "")


class LoginRequired(Exception):
    """No logged-in operator: answered with the login form and status 401."""


async def login_required_page(request: Request, exc: Exception) -> HTMLResponse:
    """401 with the login form (no data of the page that was asked for)."""
    return login_page(request, await load_session(request), status_code=401)


async def require_operator(request: Request, ctx: Context, session: SessionDep) -> User:
    """The session's user, while the user is active and its password unchanged since
    login (a session that fails either is ended)."""
    if session.user_id is None or session.handle is None:
        raise LoginRequired
    user = await active_user(ctx, session.user_id)
    if user is None or password_mark(user) != session.password_mark:
        await store(request).end(session.handle)
        raise LoginRequired
    await store(request).touch(request, session)
    return user


Operator = Annotated[User, Depends(require_operator)]


# --- checking a password: the per-account lockout -----------------------------------------


def lockout(request: Request) -> AccountLockout:
    return request.app.state.lockout  # type: ignore[no-any-return]


def _wait(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class Refused:
    """An account locked out: what to tell (when to retry) and the Retry-After header."""

    message: str
    headers: dict[str, str]

    @classmethod
    def of(cls, locked: Lockout) -> Refused:
        at = datetime.fromtimestamp(locked.until, UTC).strftime("%H:%M:%S UTC")
        return cls(
            f"Too many failed logins for this account; try again in "
            f"{_wait(locked.retry_after)} (after {at}).",
            {"Retry-After": str(locked.retry_after)},
        )


async def check_password(
    request: Request, ctx: AppContext, username: str, password: str
) -> tuple[User | None, Refused | None]:
    """The active user with these credentials (or None), unless the account is locked
    out (:class:`Refused`). Names of no account are counted and answered the same way;
    Redis that cannot be asked is a 503 (fail closed)."""
    account = lockout(request)
    locked = await fail_closed(account.begin(username))
    if locked.locked:
        return None, Refused.of(locked)
    try:
        user = await authenticate_user(ctx, username, password) if username else None
    except Exception:  # the database did not answer: not a failed login
        await account.abandoned(username)
        raise
    if user is None:
        await fail_closed(account.failed(username))
        return None, None
    await fail_closed(account.succeeded(username))
    return user, None


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, session: SessionDep) -> HTMLResponse:
    return login_page(request, session)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    ctx: Context,
    session: SessionDep,
    form: Annotated[FormData, Depends(checked_form)],
) -> Response:
    await enforce_limit(
        ctx,
        request,
        "login",
        client_address(request),
        limit=LOGIN_ATTEMPTS_PER_MINUTE,
        window=MINUTE,
        fail_closed=True,  # never guess passwords unchecked while Redis is down
    )
    username = str(form.get("username") or "")
    password = str(form.get("password") or "")
    user, refused = await check_password(request, ctx, username, password)
    if refused is not None:
        return login_page(
            request, session, error=refused.message, status_code=429, headers=refused.headers
        )
    if user is None:
        return login_page(request, session, error="Wrong username or password.", status_code=401)
    # A new session (new id, new CSRF token) at login: nothing seen before login is worth
    # anything after it, and a session this browser had before ends.
    response = RedirectResponse("/", status_code=303)
    await store(request).create(request, response, user)
    if session.handle is not None:
        await store(request).end(session.handle)
    return response


@router.post("/logout")
async def logout(
    request: Request, session: SessionDep, form: Annotated[FormData, Depends(checked_form)]
) -> Response:
    if session.handle is not None:
        await store(request).end(session.handle)
    response = RedirectResponse("/login?notice=logged-out", status_code=303)
    store(request).clear_cookie(request, response)
    return response


@router.get("/", response_class=HTMLResponse)
async def jobs(
    request: Request,
    ctx: Context,
    session: SessionDep,
    user: Operator,
    status: Annotated[
        Literal["queued", "running", "completed", "failed", "cancelled"] | None, Query()
    ] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    # The hot standby may answer the listing; the operator is checked on the primary.
    comics, total = await list_comics(
        ctx, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, status=status, standby=True
    )
    counts, workers = await queue_overview(ctx)
    return render(
        request,
        "dashboard/jobs.html",
        {
            "user": user,
            "csrf_token": session.csrf,
            "comics": comics,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "status": status,
            "statuses": STATUSES,
            "counts": counts,
            "workers": workers,
            "notice": NOTICES.get(_notice(request)),
        },
        headers=NO_STORE,
    )


@router.get("/comics/{comic_id:uuid}", response_class=HTMLResponse)
async def detail(
    comic_id: uuid.UUID, request: Request, ctx: Context, session: SessionDep, user: Operator
) -> HTMLResponse:
    # The primary's: the page an operator lands on after a retry or a cancel shows it.
    view = await get_comic(ctx, str(comic_id), OPERATOR)
    return render(
        request,
        "dashboard/comic.html",
        {
            "user": user,
            "csrf_token": session.csrf,
            "comic": view.comic,
            "pages": view.pages,
            "notice": NOTICES.get(_notice(request)),
        },
        headers=NO_STORE,
    )


@router.post("/comics/{comic_id:uuid}/retry")
async def retry(
    comic_id: uuid.UUID,
    ctx: Context,
    user: Operator,
    form: Annotated[FormData, Depends(checked_form)],
) -> Response:
    await retry_comic(ctx, str(comic_id))
    return RedirectResponse(f"/comics/{comic_id}?notice=retried", status_code=303)


@router.post("/comics/{comic_id:uuid}/cancel")
async def cancel(
    comic_id: uuid.UUID,
    ctx: Context,
    user: Operator,
    form: Annotated[FormData, Depends(checked_form)],
) -> Response:
    await cancel_comic(ctx, str(comic_id), OPERATOR)
    return RedirectResponse(f"/comics/{comic_id}?notice=cancelled", status_code=303)


# --- sessions ---------------------------------------------------------------------------


@router.get("/sessions", response_class=HTMLResponse)
async def sessions(request: Request, session: SessionDep, user: Operator) -> HTMLResponse:
    return render(
        request,
        "dashboard/sessions.html",
        {
            "user": user,
            "csrf_token": session.csrf,
            "sessions": await store(request).list(),
            "current": session.handle,
            "notice": NOTICES.get(_notice(request)),
        },
        headers=NO_STORE,
    )


@router.post("/sessions/{handle}/end")
async def end_session(
    handle: str,
    request: Request,
    session: SessionDep,
    user: Operator,
    form: Annotated[FormData, Depends(checked_form)],
) -> Response:
    if not await store(request).end(handle):
        raise HTTPException(status_code=404, detail="There is no such session (any more).")
    if handle == session.handle:
        response = RedirectResponse("/login?notice=logged-out", status_code=303)
        store(request).clear_cookie(request, response)
        return response
    return RedirectResponse("/sessions?notice=session-ended", status_code=303)


# --- one's password ---------------------------------------------------------------------


def password_page(
    request: Request,
    session: Session,
    user: User,
    *,
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return render(
        request,
        "dashboard/password.html",
        {"user": user, "csrf_token": session.csrf, "error": error},
        status_code=status_code,
        headers={**NO_STORE, **(headers or {})},
    )


@router.get("/account/password", response_class=HTMLResponse)
async def password_form(request: Request, session: SessionDep, user: Operator) -> HTMLResponse:
    return password_page(request, session, user)


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(
    request: Request,
    ctx: Context,
    session: SessionDep,
    user: Operator,
    form: Annotated[FormData, Depends(checked_form)],
) -> Response:
    """Change the operator's own password: every session of the user ends, and this
    browser gets a new one."""
    current = str(form.get("current_password") or "")
    new = str(form.get("new_password") or "")
    if new != str(form.get("repeat_password") or ""):
        return password_page(
            request, session, user, error="The new passwords do not match.", status_code=400
        )
    checked, refused = await check_password(request, ctx, user.username, current)
    if refused is not None:
        return password_page(
            request, session, user, error=refused.message, status_code=429, headers=refused.headers
        )
    if checked is None:
        return password_page(
            request, session, user, error="The current password is not right.", status_code=400
        )
    try:
        changed = await set_password(ctx, user.username, new)
    except ValueError as exc:
        return password_page(request, session, user, error=f"The new {exc}.", status_code=400)
    response = RedirectResponse("/?notice=password-changed", status_code=303)
    await store(request).end_user(user_id=str(user.id))
    await store(request).create(request, response, changed)
    return response
