"""Fixtures of the API tests: the app on the real PostgreSQL and Redis, clients per site."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from api_helpers import API, DESK, SHOP, TEST_PASSWORD, client_for
from fastapi import FastAPI
from morpheus.app import create_app
from morpheus.db import api_keys, users
from morpheus.settings import Settings
from sqlalchemy.orm import Session


@pytest.fixture
async def app_factory(settings: Settings) -> AsyncIterator[Callable[..., FastAPI]]:
    """Build the app for the test settings, with overrides; closed after the test.

    Rate limits count over a moving window (the last minute at every hit), so a test's
    hits count together wherever a minute's boundary happens to fall.
    """
    made: list[FastAPI] = []

    def build(**overrides: Any) -> FastAPI:
        app = create_app(settings.model_copy(update=overrides) if overrides else settings)
        made.append(app)
        return app

    yield build
    for app in made:
        await app.state.context.close()


@pytest.fixture
def app(app_factory: Callable[..., FastAPI]) -> FastAPI:
    return app_factory()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, API) as client:
        yield client


@pytest.fixture
async def shop(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, SHOP) as client:
        yield client


@pytest.fixture
async def desk(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, DESK) as client:
        yield client


@pytest.fixture
def api_key(db_session: Session) -> str:
    """A fresh API key (plaintext)."""
    return api_keys.create_api_key(db_session, f"test-{uuid.uuid4().hex[:8]}").key


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def operator(db_session: Session) -> tuple[str, str]:
    """A dashboard user: (username, password)."""
    username = f"op-{uuid.uuid4().hex[:8]}"
    users.create_user(db_session, username, TEST_PASSWORD)
    return username, TEST_PASSWORD


@pytest.fixture(autouse=True)
async def _clean_redis(settings: Settings) -> AsyncIterator[None]:
    """Remove this test's queue and rate-limit keys afterwards."""
    yield
    client = redis.from_url(settings.redis_url)
    try:
        for pattern in (f"bull:{settings.queue_name}:*", f"morpheus:{settings.queue_name}:*"):
            keys = [key async for key in client.scan_iter(match=pattern)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()
