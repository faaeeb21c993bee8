"""Health endpoints against the real services (and unreachable ones) and /metrics."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable

import httpx
from api_helpers import API, NOVEL, client_for
from fastapi import FastAPI
from morpheus import __version__

INTERNAL = "http://10.1.2.3:8000"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_live_and_ready_with_the_services_up(app: FastAPI) -> None:
    async with client_for(app, INTERNAL) as probe:
        live = await probe.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        ready = await probe.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}
        # A deploy checks that a new container runs the release it started.
        assert ready.json()["release_id"] == "test"
        summary = await probe.get("/health")
    body = summary.json()
    assert summary.status_code == 200
    assert body["version"] == __version__ and body["release_id"] == "test"
    assert body["status"] == "ok"


async def test_ready_names_redis_when_it_is_down(app_factory: Callable[..., FastAPI]) -> None:
    app = app_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with client_for(app, INTERNAL) as probe:
        ready = await probe.get("/health/ready")
        live = await probe.get("/health/live")
        summary = await probe.get("/health")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["redis"]
    assert ready.json()["checks"]["postgresql"] == "ok"
    assert live.status_code == 200  # liveness touches nothing
    assert summary.json()["status"] == "degraded"


async def test_ready_names_postgresql_when_it_is_down(
    app_factory: Callable[..., FastAPI],
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nowhere"
    app = app_factory(database_url=url, db_connect_timeout_seconds=1)
    async with client_for(app, INTERNAL) as probe:
        ready = await probe.get("/health/ready")
        live = await probe.get("/health/live")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["postgresql"]
    assert ready.json()["checks"]["redis"] == "ok"
    assert live.status_code == 200


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_exposition(app: FastAPI, auth: dict[str, str]) -> None:
    async with client_for(app, API) as api:
        accepted = await api.post("/v1/comics", json={"title": "M", "text": NOVEL}, headers=auth)
        assert accepted.status_code == 202
        comic_id = accepted.json()["id"]
        for _ in range(2):
            await api.get(f"/v1/comics/{comic_id}", headers=auth)
        await api.get(f"/v1/comics/{uuid.uuid4()}", headers=auth)
        # Not on the public host names.
        assert (await api.get("/metrics")).status_code == 404
    async with client_for(app, INTERNAL) as scraper:
        response = await scraper.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/v1/comics/{comic_id:uuid}"
    ok = sample(
        text, "morpheus_http_requests_total", site="api", method="GET", route=route, status="200"
    )
    assert ok is not None and ok >= 2
    missing = sample(
        text, "morpheus_http_requests_total", site="api", method="GET", route=route, status="404"
    )
    assert missing is not None and missing >= 1
    assert sample(
        text, "morpheus_http_request_duration_seconds_count", site="api", route="/v1/comics"
    )
    assert re.search(r'morpheus_http_request_duration_seconds_bucket\{.*le="0.1"', text)
    # No raw ids as label values: routes are templates.
    assert comic_id not in text
    # Queue depth by state, read from the queue at scrape time.
    assert sample(text, "morpheus_queue_jobs", state="waiting") == 1.0
    assert sample(text, "morpheus_queue_jobs", state="active") == 0.0
    # Metrics the pipeline, providers, storage and worker define, in the same registry.
    for name in (
        "morpheus_provider_request_seconds",
        "morpheus_storage_request_seconds",
        "morpheus_job_stage_seconds",
    ):
        assert f"# TYPE {name} histogram" in text, name


async def test_rate_limited_requests_are_counted(app_factory: Callable[..., FastAPI]) -> None:
    app = app_factory(rate_limit_requests_per_minute=1)
    async with client_for(app, "http://morpheus.localhost") as shop:
        await shop.get("/")
        assert (await shop.get("/")).status_code == 429
    async with client_for(app, INTERNAL) as scraper:
        text = (await scraper.get("/metrics")).text
    value = sample(
        text, "morpheus_http_rate_limited_total", site="storefront", limit="storefront-requests"
    )
    assert value is not None and value >= 1
    assert sample(text, "morpheus_http_requests_total", site="storefront", route="/", status="429")


async def test_metrics_answer_even_when_the_queue_is_down(
    app_factory: Callable[..., FastAPI],
) -> None:
    app = app_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    async with client_for(app, INTERNAL) as scraper:
        response = await scraper.get("/metrics")
    assert response.status_code == 200
    assert "morpheus_http_requests_total" in response.text


async def test_health_is_not_cached(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health/ready")).headers["cache-control"] == "no-store"
