"""Routes resolve their dependencies on the event loop: FastAPI runs a plain function
dependency in its thread pool, a hop (and, under load, a wait for a free thread) for
every request, however little the function does."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest
from api_helpers import client_for
from fastapi import FastAPI

INTERNAL = "http://10.1.2.3:8000"


async def test_health_answered_from_a_reused_round_takes_no_thread(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with client_for(app, INTERNAL) as probe:
        # The round of checks (PostgreSQL's runs in a thread), reused by the requests below.
        assert (await probe.get("/health")).status_code == 200
        hops: list[str] = []
        run_sync = anyio.to_thread.run_sync

        async def counted(function: Any, *args: Any, **kwargs: Any) -> Any:
            hops.append(getattr(function, "__qualname__", repr(function)))
            return await run_sync(function, *args, **kwargs)

        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        for path in ("/health", "/health/ready", "/health/live"):
            assert (await probe.get(path)).status_code == 200
    assert hops == []
