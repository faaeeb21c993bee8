"""The series an operator reads on /metrics: requests by route template, the queue, workers.

Each test scrapes the exposition the way Prometheus does (GET /metrics on an internal
name) and parses it with prometheus-client's own parser. Counters are process-wide, so
the HTTP tests compare a scrape before and after their requests.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import morpheus.providers.breaker  # noqa: F401 - registers the circuit gauge, as a worker does
import redis.asyncio as redis
from api_helpers import API, client_for
from bullmq import Queue
from fastapi import FastAPI
from morpheus.queue import client as queue_client
from morpheus.queue.connection import queue_options
from morpheus.settings import Settings
from morpheus.worker.heartbeat import Heartbeat
from prometheus_client.parser import text_string_to_metric_families

INTERNAL = "http://10.1.2.3:8000"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(app: FastAPI) -> tuple[str, Samples]:
    """The exposition text and its samples, keyed by (name, labels)."""
    async with client_for(app, INTERNAL) as scraper:
        response = await scraper.get("/metrics")
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is absent (a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key[1])[label] for key in samples if key[0] == name and label in dict(key[1])}


UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)


async def test_requests_are_counted_and_timed_by_route_template(
    app: FastAPI, auth: dict[str, str]
) -> None:
    item = "/v1/comics/{comic_id:uuid}"
    _, before = await scrape(app)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    unknown = f"/v1/nowhere-{uuid.uuid4().hex}"
    async with client_for(app, API) as api:
        for comic_id in ids:
            assert (await api.get(f"/v1/comics/{comic_id}", headers=auth)).status_code == 404
        assert (await api.get("/v1/comics", headers=auth)).status_code == 405
        assert (await api.get(unknown, headers=auth)).status_code == 404
        odd = f"X{uuid.uuid4().hex[:8].upper()}"  # any token is a method on the wire
        assert (await api.request(odd, "/v1/comics", headers=auth)).status_code == 405
    text, after = await scrape(app)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "morpheus_http_requests_total"
    assert delta(requests, site="api", method="GET", route=item, status="404") == 3
    assert delta(requests, site="api", method="GET", route="/v1/comics", status="405") == 1
    assert delta(requests, site="api", method="GET", route="unmatched", status="404") == 1
    assert delta(requests, site="api", method="other", route="/v1/comics", status="405") == 1

    # The latency histogram counts the same requests under the same route template.
    latency = "morpheus_http_request_duration_seconds"
    labels = {"site": "api", "method": "GET", "route": item}
    assert delta(f"{latency}_count", **labels) == 3
    buckets = sorted(
        (float(dict(key[1])["le"]), count)
        for key, count in after.items()
        if key[0] == f"{latency}_bucket" and {**dict(key[1]), "le": ""} == {**labels, "le": ""}
    )
    assert buckets[-1] == (float("inf"), value(after, f"{latency}_count", **labels))
    counts = [count for _, count in buckets]
    assert counts == sorted(counts), "histogram buckets are cumulative"
    assert value(after, f"{latency}_sum", **labels) > 0

    # Label values are route templates: no id and no unknown path ever becomes one.
    for route in label_values(after, requests, "route"):
        assert route == "unmatched" or route.startswith("/"), route
        assert not UUID.search(route), f"an id in a route label: {route}"
    assert "unmatched" in label_values(after, f"{latency}_count", "route")
    for raw in [*ids, unknown, unknown.rsplit("-", 1)[1], odd]:
        assert raw not in text


async def enqueue(settings: Settings, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for comic_id in ids:
        await queue_client.enqueue_comic(settings, comic_id)
    return ids


async def set_job_fields(settings: Settings, job_id: str, **fields: int) -> None:
    client = redis.from_url(settings.redis_url)
    try:
        await client.hset(f"bull:{settings.queue_name}:{job_id}", mapping=fields)
    finally:
        await client.aclose()


async def test_queue_depth_by_state_and_the_oldest_waiting_job(
    app: FastAPI, settings: Settings
) -> None:
    _, empty = await scrape(app)
    assert value(empty, "morpheus_queue_read_success") == 1
    assert value(empty, "morpheus_queue_jobs", state="waiting") == 0
    assert value(empty, "morpheus_queue_oldest_job_age_seconds") == 0

    first, *_ = await enqueue(settings, 3)
    queue = Queue(settings.queue_name, queue_options(settings))
    try:
        later = str(uuid.uuid4())
        await queue.add("comic", {"comic_id": later}, {"jobId": later, "delay": 600_000})
    finally:
        await queue.close()
    # The first job queued is the next in line; say it was added ten minutes ago.
    now_ms = int(time.time() * 1000)
    await set_job_fields(settings, first, timestamp=now_ms - 600_000)
    _, samples = await scrape(app)
    counts = {
        state: value(samples, "morpheus_queue_jobs", state=state)
        for state in ("waiting", "active", "delayed", "failed", "completed")
    }
    assert counts == {"waiting": 3, "active": 0, "delayed": 1, "failed": 0, "completed": 0}
    oldest = value(samples, "morpheus_queue_oldest_job_age_seconds")
    assert 600 <= oldest < 3600, oldest

    # Back in the queue after an attempt began four minutes ago: it waits since then.
    await set_job_fields(settings, first, processedOn=now_ms - 240_000)
    _, samples = await scrape(app)
    assert 240 <= value(samples, "morpheus_queue_oldest_job_age_seconds") < 600

    # Gone from the queue: the next job in line is a fresh one.
    assert await queue_client.cancel_comic(settings, first)
    _, samples = await scrape(app)
    assert value(samples, "morpheus_queue_jobs", state="waiting") == 2
    assert value(samples, "morpheus_queue_oldest_job_age_seconds") < 240


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def describing(**document: Any) -> Callable[[], dict[str, Any]]:
    return lambda: {"started_at": "2026-01-01T00:00:00+00:00", **document}


async def test_live_workers_and_their_slots_come_from_the_heartbeats(
    app: FastAPI, settings: Settings
) -> None:
    busy = Heartbeat(settings, "w-busy", describing(concurrency=2, active=["a"], draining=False), 5)
    draining = Heartbeat(
        settings, "w-draining", describing(concurrency=3, active=["b"], draining=True), 5
    )
    try:
        await busy.beat()
        await draining.beat()
        _, samples = await scrape(app)
        assert value(samples, "morpheus_workers_live") == 2
        assert value(samples, "morpheus_workers_draining") == 1
        assert value(samples, "morpheus_worker_job_slots", state="busy") == 2
        # The draining worker's idle slots are not free: it takes no new job.
        assert value(samples, "morpheus_worker_job_slots", state="free") == 1
    finally:
        await draining.stop()
    _, samples = await scrape(app)
    assert value(samples, "morpheus_workers_live") == 1
    assert value(samples, "morpheus_workers_draining") == 0
    await busy.stop()
    _, samples = await scrape(app)
    assert value(samples, "morpheus_workers_live") == 0


async def test_an_unreadable_queue_shows_as_such_not_as_old_figures(
    app: FastAPI, app_factory: Callable[..., FastAPI], settings: Settings
) -> None:
    await enqueue(settings, 2)
    _, samples = await scrape(app)
    assert value(samples, "morpheus_queue_jobs", state="waiting") == 2
    down = app_factory(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    text, samples = await scrape(down)
    assert value(samples, "morpheus_queue_read_success") == 0
    shown = {name for name, _ in samples}
    for stale in (
        "morpheus_queue_jobs",
        "morpheus_queue_oldest_job_age_seconds",
        "morpheus_workers_live",
        "morpheus_worker_job_slots",
    ):
        assert stale not in shown, f"{stale} shown although the queue could not be read"
    # The HTTP series are still there.
    assert "morpheus_http_requests_total{" in text


DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"
DOC_ROW = re.compile(r"^\| `(morpheus_[a-z_]+)` \| (counter|gauge|histogram) \|", re.M)


async def test_every_metric_is_documented_with_its_type(app: FastAPI) -> None:
    async with client_for(app, INTERNAL) as scraper:
        text = (await scraper.get("/metrics")).text
    exposed = {}
    for family in text_string_to_metric_families(text):
        # Each counter and histogram comes with a ``_created`` gauge (its start time).
        if family.name.startswith("morpheus_") and not family.name.endswith("_created"):
            name = family.name + ("_total" if family.type == "counter" else "")
            exposed[name] = family.type
    documented = dict(DOC_ROW.findall(DOC.read_text()))
    # Worker-only figures are registered here too: the API and worker modules share a registry.
    assert exposed == documented, "docs/metrics.md and the exposition differ"
