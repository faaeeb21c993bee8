"""Cross-site request forgery: the storefront's visitor-bound form token, and the Origin
check of every state-changing form of both sites.

**Origin check.** A browser names the page a POST comes from in ``Origin`` (and, should it
leave that out, in ``Referer``). A POST whose origin is another site is refused with 403
before its body is read: another host name, a scheme other than http/https, ``null``
(a sandboxed or ``data:`` page), or plain HTTP to a site reached over HTTPS. The host name
must be the one the request was sent to (the port does not count: nginx may forward
another port). A request with neither header (a program, not a browser page) is left to
the token.

**Visitor-bound token.** The storefront has no login, so its form is tied to the visitor
by a cookie, :data:`VISITOR_COOKIE`: a random id, HttpOnly, SameSite=Lax, Secure over
HTTPS, set with every form shown. The form's one-time ``form_token`` (the submission's
idempotency key too) is ``<nonce>.<mac>``, the mac an HMAC of the visitor id and the nonce
under the application's secret key; a submission whose token was not made for the
cookie it comes with is refused with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

VISITOR_COOKIE = "morpheus_visitor"
# A visitor's forms stay good this long after the last one was shown.
VISITOR_MAX_AGE = 7 * 24 * 3600
_VISITOR_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAC_LENGTH = 43
_SALT = b"morpheus.storefront.form-token\0"

CROSS_SITE_MESSAGE = (
    "This form was sent from another site, so it was refused and nothing was sent. "
    "To make a comic, use the form on this site."
)
DASHBOARD_CROSS_SITE_MESSAGE = (
    "This form was sent from another site, so it was refused and nothing was done."
)


def _site_of(value: str) -> tuple[str, str] | None:
    """The (scheme, host name) of an Origin or Referer value, or None when it has none."""
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        return None
    return parts.scheme, hostname.lower()


def cross_site(request: Request) -> bool:
    """True when the request's Origin (or Referer) names a page of another site."""
    origin = request.headers.get("origin")
    claimed = origin if origin is not None else request.headers.get("referer")
    if claimed is None:
        return False  # not sent by a browser page: the token decides
    site = _site_of(claimed.strip())
    if site is None:
        return True  # "null", another scheme, nonsense
    scheme, hostname = site
    if scheme == "http" and request.url.scheme == "https":
        return True
    return hostname != (request.url.hostname or "").lower()


class FormTokens:
    """Makes and checks the storefront's visitor-bound form tokens."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(_SALT + secret_key.encode("utf-8")).digest()

    def visitor(self, request: Request) -> str | None:
        """The visitor id of the request's cookie, when it has a well-formed one."""
        value = request.cookies.get(VISITOR_COOKIE, "")
        return value if _VISITOR_RE.fullmatch(value) else None

    def _mac(self, visitor: str, nonce: str) -> str:
        digest = hmac.new(self._key, f"{visitor}\0{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")[:_MAC_LENGTH]

    def issue(self, request: Request) -> tuple[str, str]:
        """(visitor id, a new form token for it): the cookie's id, or a new one."""
        visitor = self.visitor(request) or secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(24)
        return visitor, f"{nonce}.{self._mac(visitor, nonce)}"

    def valid(self, request: Request, token: str | None) -> bool:
        """True when ``token`` was made for the visitor cookie the request carries."""
        visitor = self.visitor(request)
        if visitor is None or not token:
            return False
        nonce, dot, mac = token.partition(".")
        if not dot or not nonce:
            return False
        return hmac.compare_digest(self._mac(visitor, nonce), mac)

    @staticmethod
    def set_cookie(request: Request, response: Response, visitor: str) -> None:
        response.set_cookie(
            VISITOR_COOKIE,
            visitor,
            max_age=VISITOR_MAX_AGE,
            path="/",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )
