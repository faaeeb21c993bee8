"""A worker's /metrics after real comic jobs: outcomes, stage durations, live workers.

The worker runtime runs in this process with the real comic job (local provider) on the
machine's Redis and PostgreSQL; its figures are scraped over HTTP from prometheus-client's
exposition server, the one ``morpheus worker`` starts on ``worker_metrics_port``.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as redis
from morpheus.db import comics
from morpheus.db.session import session_scope
from morpheus.queue import client as queue_client
from morpheus.settings import Settings
from morpheus.worker.comic_job import ComicJob
from morpheus.worker.heartbeat import Heartbeat
from morpheus.worker.runtime import WorkerRuntime
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families
from queue_helpers import create_tiny_comic, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STAGES = ("segment", "render", "compose", "package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    """The worker's exposition served over HTTP on a free local port."""
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(5)


async def scrape(url: str) -> Samples:
    response = await asyncio.to_thread(httpx.get, url, timeout=5)
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class FaultyComicJob(ComicJob):
    """The real comic job, except that some comics fail: once, or every time."""

    def __init__(self, settings: Settings, fail_once: set[str], fail_always: set[str]) -> None:
        super().__init__(settings)
        self.fail_once, self.fail_always = fail_once, fail_always

    async def run(self, comic_id: str) -> str:
        if comic_id in self.fail_always:
            raise RuntimeError("the panel provider is down")
        if comic_id in self.fail_once:
            self.fail_once.discard(comic_id)
            raise RuntimeError("a passing fault")
        return await super().run(comic_id)


def cancelled_comic(settings: Settings) -> str:
    comic_id = create_tiny_comic(settings, "Never Drawn")
    with session_scope(settings) as session:
        comics.cancel_comic(session, uuid.UUID(comic_id))
    return comic_id


async def test_outcomes_stage_durations_and_live_workers_on_the_workers_metrics(
    queue_settings: Settings, redis_client: redis.Redis, metrics_url: str
) -> None:
    settings = queue_settings.model_copy(update={"job_attempts": 2, "job_backoff_seconds": 0.05})
    good, flaky, broken = (create_tiny_comic(settings, title) for title in ("A", "B", "C"))
    cancelled = cancelled_comic(settings)
    before = await scrape(metrics_url)
    # Every outcome is exposed from the start, at 0 in a new process.
    for outcome in ("completed", "cancelled", "retry", "timeout", "failed", "requeued"):
        assert ("morpheus_job_attempts_total", frozenset({("outcome", outcome)})) in before

    runtime = WorkerRuntime(settings, FaultyComicJob(settings, {flaky}, {broken}))
    task = asyncio.create_task(runtime.serve())
    try:
        # The worker reads the queue at each heartbeat: it sees itself among the live.
        live = await wait_for(
            lambda: scrape(metrics_url),
            lambda s: value(s, "morpheus_workers_live") == 1,
            timeout=10,
            what="the worker's heartbeat on its own /metrics",
        )
        assert value(live, "morpheus_queue_read_success") == 1
        for comic_id in (good, flaky, broken, cancelled):
            await queue_client.enqueue_comic(settings, comic_id)
        finals = {good: "completed", flaky: "completed", cancelled: "completed"}
        finals[broken] = "failed"

        async def states() -> dict[str, str]:
            return {c: await queue_client.job_state(settings, c) for c in finals}

        await wait_for(states, lambda s: s == finals, timeout=60, what="every job to end")
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)
    after = await scrape(metrics_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    attempts = "morpheus_job_attempts_total"
    assert delta(attempts, outcome="completed") == 2  # good, and flaky at its second try
    assert delta(attempts, outcome="cancelled") == 1
    assert delta(attempts, outcome="retry") == 2  # flaky's and broken's first attempts
    assert delta(attempts, outcome="failed") == 1  # broken, for good
    assert delta(attempts, outcome="timeout") == 0
    # Two comics were drawn (the cancelled one stopped before its first stage).
    for stage in STAGES:
        assert delta("morpheus_job_stage_seconds_count", stage=stage) == 2, stage
        assert delta("morpheus_job_stage_seconds_sum", stage=stage) > 0, stage


async def test_heartbeats_redis_refused_are_counted(
    queue_settings: Settings, metrics_url: str
) -> None:
    unreachable = queue_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    failures = "morpheus_worker_heartbeat_failures_total"
    before = value(await scrape(metrics_url), failures)
    heartbeat = Heartbeat(unreachable, "w-lonely", lambda: {"active": []}, interval=0.05)
    heartbeat.start()
    try:
        await wait_for(
            lambda: scrape(metrics_url),
            lambda s: value(s, failures) >= before + 2,
            timeout=10,
            what="failed heartbeats on /metrics",
        )
    finally:
        await heartbeat.stop()
