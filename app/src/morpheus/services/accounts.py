"""Who is asking: an API key's client, a dashboard operator logging in, the operator
behind a session; and an operator's new password."""

from __future__ import annotations

import uuid

from starlette.concurrency import run_in_threadpool

from morpheus.db import api_keys, users
from morpheus.db.models import ApiKey, User
from morpheus.db.session import retry_on_disconnect
from morpheus.services.context import AppContext


async def authenticate_api_key(ctx: AppContext, key: str) -> ApiKey | None:
    """The active API key for this plaintext key, or None."""

    def verify() -> ApiKey | None:
        with ctx.sessions() as session:
            return api_keys.verify_api_key(session, key)

    return await run_in_threadpool(retry_on_disconnect(verify))


async def authenticate_user(ctx: AppContext, username: str, password: str) -> User | None:
    """The active user with these credentials, or None."""
    if "\x00" in username:  # PostgreSQL cannot hold a NUL, so no user is named with one
        return None

    def verify() -> User | None:
        with ctx.sessions() as session:
            return users.verify_user(session, username, password)

    return await run_in_threadpool(verify)


async def active_user(ctx: AppContext, user_id: str) -> User | None:
    """The user behind a session, if it still exists and is active."""
    try:
        parsed = uuid.UUID(user_id)
    except ValueError:
        return None

    def read() -> User | None:
        with ctx.sessions() as session:
            user = users.get_user(session, parsed)
            return user if user is not None and user.is_active else None

    return await run_in_threadpool(retry_on_disconnect(read))


async def set_password(ctx: AppContext, username: str, password: str) -> User:
    """Give the user a new password; ``ValueError`` when the password is not acceptable."""

    def change() -> User:
        with ctx.sessions() as db:
            return users.set_user_password(db, username, password)

    return await run_in_threadpool(change)
