"""The dashboard's sessions, kept server-side in Redis, and their CSRF tokens.

Before login the cookie is a signed (not encrypted) ``{"csrf": <token>}`` with
``secret_key``: the login form's CSRF token, nothing to keep on the server. Logging in
issues a new session: the cookie then holds only a random id (43 URL-safe characters,
never a ``.``, so the two kinds cannot be mistaken for each other), and what the session
is lives in Redis under ``morpheus:<queue>:sessions:``: the user, the CSRF token, when
it was created and last seen, from which address and browser, and a mark of the user's
password hash. The Redis key is named by the SHA-256 of the cookie's id (the session's
*handle*), so neither Redis nor the operators' listing of sessions ever holds what a
cookie holds.

A session ends when it is deleted from Redis: at logout, when an operator ends it (the
dashboard's Sessions page, ``morpheus sessions end``), when the user's password changes
(the dashboard's change ends every session of the user and issues the one that changed
it anew; a password set any other way no longer matches the session's mark, which ends
it at its next request), or :data:`SESSION_MAX_AGE` after login. Redis that cannot be
asked is :class:`SessionsUnavailable`: the dashboard answers 503, never lets anyone in
unchecked.

Cookies are HttpOnly, SameSite=Lax and Secure when the request came over HTTPS. Every
dashboard form carries the session's CSRF token, and a POST whose token does not match
is refused with 403.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import redis.asyncio as redis
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from morpheus.db.models import User
from morpheus.settings import Settings

COOKIE_NAME = "morpheus_session"
# A session lasts this long after login, however busy (and the login form's token too).
SESSION_MAX_AGE = 8 * 3600
_SALT = "morpheus.dashboard.session"
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_HANDLE_RE = re.compile(r"[0-9a-f]{32}")
USER_AGENT_LENGTH = 200
# How long the command line waits for Redis.
CLI_REDIS_TIMEOUT_SECONDS = 5
# What Redis failing looks like (as the rate limiter sees it).
STORAGE_ERRORS = (RedisError, OSError, TimeoutError)
# Note a session's use, only while it exists: an ended session must not come back as a stub.
_TOUCH = """
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('hset', KEYS[1], 'last_seen', ARGV[1], 'address', ARGV[2])
  return 1
end
return 0
"""


class SessionsUnavailable(Exception):
    """Redis could not be asked about a session: nobody may be let in unchecked."""


def session_prefix(settings: Settings) -> str:
    """Where the sessions of this deployment live in Redis (beside its rate limits)."""
    return f"morpheus:{settings.queue_name}:sessions"


def client_address(request: Request) -> str:
    """The client's address, as the proxy-headers middleware settled it."""
    return request.client.host if request.client else "unknown"


def handle_of(session_id: str) -> str:
    """The public name of a session: a hash of its cookie's id."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()[:32]


def password_mark(user: User) -> str:
    """A short mark of the user's password hash: a new password gives a new mark."""
    return hashlib.sha256(user.password_hash.encode("utf-8")).hexdigest()[:16]


@dataclass
class Session:
    """A browser's session: its CSRF token and, once logged in, the user and its handle."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user_id: str | None = None
    handle: str | None = None
    password_mark: str | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A logged-in session as operators see it (never the cookie's id)."""

    handle: str
    user_id: str
    username: str
    created: datetime
    last_seen: datetime
    address: str
    user_agent: str


def _text(data: dict[bytes, bytes], name: str) -> str:
    return data.get(name.encode(), b"").decode("utf-8", "replace")


def _when(data: dict[bytes, bytes], name: str) -> datetime:
    try:
        seconds = float(_text(data, name))
    except ValueError:
        seconds = 0.0
    return datetime.fromtimestamp(seconds, UTC)


class SessionStore:
    """Dashboard sessions in Redis, and the cookie that names them."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        secret_key: str,
        *,
        max_age: int = SESSION_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_age = max_age
        self.clock = clock
        self._serializer = URLSafeTimedSerializer(secret_key, salt=_SALT)
        self._touch = client.register_script(_TOUCH)

    def _key(self, handle: str) -> str:
        return f"{self.prefix}:s:{handle}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:index"

    # --- one browser's session ----------------------------------------------------------

    async def load(self, request: Request) -> Session:
        """The request's session: logged in, or a login form's (new when there is none).

        Raises :class:`SessionsUnavailable` when the cookie names a session and Redis
        cannot be asked about it."""
        raw = request.cookies.get(COOKIE_NAME) or ""
        if _SESSION_ID_RE.fullmatch(raw):
            handle = handle_of(raw)
            try:
                data = await self.client.hgetall(self._key(handle))
            except STORAGE_ERRORS as exc:
                raise SessionsUnavailable(str(exc)) from exc
            user_id, csrf = _text(data, "user_id"), _text(data, "csrf")
            if user_id and csrf:
                return Session(
                    csrf=csrf,
                    user_id=user_id,
                    handle=handle,
                    password_mark=_text(data, "password_mark"),
                )
        elif raw:
            try:
                data = self._serializer.loads(raw, max_age=self.max_age)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                return Session(csrf=data["csrf"])
        return Session()

    def save_login_form(self, request: Request, response: Response, session: Session) -> None:
        """Set the cookie of a session not logged in (the login form's CSRF token)."""
        if session.handle is not None:
            return  # a logged-in session's cookie stays as it is
        self._set_cookie(request, response, self._serializer.dumps({"csrf": session.csrf}))

    async def create(self, request: Request, response: Response, user: User) -> Session:
        """A new logged-in session for ``user`` (a new id and CSRF token), set as the
        response's cookie; raises :class:`SessionsUnavailable`."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            user_id=str(user.id), handle=handle_of(session_id), password_mark=password_mark(user)
        )
        now = self.clock()
        record = {
            "user_id": session.user_id,
            "username": user.username,
            "csrf": session.csrf,
            "password_mark": session.password_mark,
            "created": repr(now),
            "last_seen": repr(now),
            "address": client_address(request),
            "user_agent": request.headers.get("user-agent", "")[:USER_AGENT_LENGTH],
        }
        key = self._key(session.handle)  # type: ignore[arg-type]
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=record)  # type: ignore[arg-type]
                pipe.expire(key, self.max_age)
                pipe.zadd(self._index, {session.handle: now + self.max_age})
                pipe.expire(self._index, self.max_age)
                await pipe.execute()
        except STORAGE_ERRORS as exc:
            raise SessionsUnavailable(str(exc)) from exc
        self._set_cookie(request, response, session_id)
        return session

    async def touch(self, request: Request, session: Session) -> None:
        """Note that the session was used now, from the request's address."""
        if session.handle is None:
            return
        key = self._key(session.handle)
        try:
            await self._touch(keys=[key], args=[repr(self.clock()), client_address(request)])
        except STORAGE_ERRORS as exc:
            raise SessionsUnavailable(str(exc)) from exc

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE_NAME,
            path="/",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )

    def _set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=self.max_age,
            path="/",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )

    # --- every session (operators) ------------------------------------------------------

    async def list(self) -> list[SessionRecord]:
        """Every live session, the most recently used first."""
        try:
            await self.client.zremrangebyscore(self._index, "-inf", self.clock())
            handles = [h.decode() for h in await self.client.zrange(self._index, 0, -1)]
            async with self.client.pipeline(transaction=False) as pipe:
                for handle in handles:
                    pipe.hgetall(self._key(handle))
                found = await pipe.execute() if handles else []
            gone = [handle for handle, data in zip(handles, found, strict=True) if not data]
            if gone:
                await self.client.zrem(self._index, *gone)
        except STORAGE_ERRORS as exc:
            raise SessionsUnavailable(str(exc)) from exc
        records = [
            SessionRecord(
                handle=handle,
                user_id=_text(data, "user_id"),
                username=_text(data, "username"),
                created=_when(data, "created"),
                last_seen=_when(data, "last_seen"),
                address=_text(data, "address"),
                user_agent=_text(data, "user_agent"),
            )
            for handle, data in zip(handles, found, strict=True)
            if data
        ]
        return sorted(records, key=lambda record: record.last_seen, reverse=True)

    async def end(self, handle: str) -> bool:
        """End one session; False when there was no such session."""
        if not _HANDLE_RE.fullmatch(handle):
            return False
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(handle))
                pipe.zrem(self._index, handle)
                deleted, _ = await pipe.execute()
        except STORAGE_ERRORS as exc:
            raise SessionsUnavailable(str(exc)) from exc
        return bool(deleted)

    async def end_user(
        self, *, user_id: str | None = None, username: str | None = None, keep: str | None = None
    ) -> int:
        """End every session of a user (by id or name) but ``keep``; how many ended."""
        ended = 0
        for record in await self.list():
            mine = record.user_id == user_id if user_id is not None else False
            mine = mine or (username is not None and record.username == username)
            if mine and record.handle != keep and await self.end(record.handle):
                ended += 1
        return ended


# --- for the command line (``morpheus sessions``) ---------------------------------------

T = TypeVar("T")


def _with_store(settings: Settings, action: Callable[[SessionStore], Awaitable[T]]) -> T:
    async def run() -> T:
        client = redis.from_url(
            settings.redis_url,
            socket_timeout=CLI_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=CLI_REDIS_TIMEOUT_SECONDS,
        )
        try:
            store = SessionStore(
                client, session_prefix(settings), settings.secret_key.get_secret_value()
            )
            return await action(store)
        finally:
            await client.aclose()

    return asyncio.run(run())


def list_sessions(settings: Settings) -> list[SessionRecord]:
    """Every live session (raises :class:`SessionsUnavailable`)."""
    return _with_store(settings, lambda store: store.list())


def end_session(settings: Settings, handle: str) -> bool:
    """End one session by its handle; False when there was none."""
    return _with_store(settings, lambda store: store.end(handle))


def end_user_sessions(settings: Settings, username: str) -> int:
    """End every session of the user named ``username``; how many ended."""
    return _with_store(settings, lambda store: store.end_user(username=username))


def csrf_matches(session: Session, submitted: str | None) -> bool:
    """True when the form's token is the session's (compared in constant time)."""
    return bool(submitted) and hmac.compare_digest(session.csrf, str(submitted))
