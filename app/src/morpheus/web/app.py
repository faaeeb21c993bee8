"""The two sites' applications: the readers' storefront and the operators' dashboard,
each answering errors with an HTML page (503 with ``Retry-After`` for a database or a
session store that cannot answer). Mounted on their host names by :mod:`morpheus.app`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from morpheus.services.context import AppContext
from morpheus.services.ratelimit import AccountLockout
from morpheus.services.sessions import SessionStore, SessionsUnavailable, session_prefix
from morpheus.web import dashboard, storefront
from morpheus.web.csrf import FormTokens
from morpheus.web.pages import install_error_pages, sessions_unavailable_page
from morpheus.web.templating import STATIC_DIR


def _site_app(name: str, context: AppContext) -> FastAPI:
    app = FastAPI(title=f"Morpheus {name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.site = name
    app.state.context = context
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_pages(app)
    return app


def storefront_app(context: AppContext) -> FastAPI:
    """The readers' site, answering on ``storefront_host``."""
    settings = context.settings
    shop = _site_app("storefront", context)
    shop.state.form_tokens = FormTokens(settings.secret_key.get_secret_value())
    shop.include_router(storefront.router)
    return shop


def dashboard_app(context: AppContext) -> FastAPI:
    """The operators' site, answering on ``dashboard_host``."""
    settings = context.settings
    desk = _site_app("dashboard", context)
    desk.state.sessions = SessionStore(
        context.redis, session_prefix(settings), settings.secret_key.get_secret_value()
    )
    desk.state.lockout = AccountLockout(
        context.redis,
        f"morpheus:{settings.queue_name}:lockout",
        enabled=settings.rate_limit_enabled,
    )
    desk.include_router(dashboard.router)
    desk.add_exception_handler(dashboard.LoginRequired, dashboard.login_required_page)
    desk.add_exception_handler(SessionsUnavailable, sessions_unavailable_page)
    return desk
