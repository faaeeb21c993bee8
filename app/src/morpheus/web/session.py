"""The dashboard's signed session cookie and its CSRF token.

The cookie holds ``{"csrf": <token>, "uid": <user id>}`` signed (not encrypted) with
``secret_key``; it is HttpOnly, SameSite=Lax and Secure when the request came over
HTTPS, and expires after :data:`SESSION_MAX_AGE`. Every dashboard form carries the
session's CSRF token, and a POST whose token does not match is refused with 403.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE_NAME = "morpheus_session"
SESSION_MAX_AGE = 8 * 3600
_SALT = "morpheus.dashboard.session"


@dataclass
class Session:
    """What the cookie says: a CSRF token, and the user id once logged in."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user_id: str | None = None
    changed: bool = False


class SessionCodec:
    """Signs and verifies session cookies with the application's secret key."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=_SALT)

    def load(self, request: Request) -> Session:
        raw = request.cookies.get(COOKIE_NAME)
        if raw:
            try:
                data = self._serializer.loads(raw, max_age=SESSION_MAX_AGE)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                uid = data.get("uid")
                return Session(csrf=data["csrf"], user_id=uid if isinstance(uid, str) else None)
        return Session(changed=True)

    def save(self, request: Request, response: Response, session: Session) -> None:
        value = self._serializer.dumps({"csrf": session.csrf, "uid": session.user_id})
        response.set_cookie(
            COOKIE_NAME,
            value,
            max_age=SESSION_MAX_AGE,
            path="/",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )

    def clear(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE_NAME,
            path="/",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )


def csrf_matches(session: Session, submitted: str | None) -> bool:
    """True when the form's token is the session's (compared in constant time)."""
    return bool(submitted) and hmac.compare_digest(session.csrf, str(submitted))
