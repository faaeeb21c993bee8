"""Real ``morpheus worker`` processes: kill -9, SIGTERM drains, Redis restarts, /metrics.

Each test starts worker processes on the real PostgreSQL and Redis with short lock and
stalled-check timings, and a test-only pause before each panel so a job of the tiny novel
lasts long enough to be interrupted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from morpheus.db import comics
from morpheus.db.session import session_scope
from morpheus.queue import client as queue_client
from morpheus.settings import Settings
from morpheus.storage import get_storage
from queue_helpers import (
    SMALL_OPTIONS,
    TINY_NOVEL,
    TINY_PANELS,
    WorkerProcess,
    comic_status,
    create_tiny_comic,
    load_comic,
    load_pages,
    queue_events,
    settings_env,
    wait_for,
)

pytestmark = pytest.mark.slow

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts worker processes with the given settings; kills what is left at the end.

    ``command`` runs instead of ``morpheus worker``, ``env`` adds to its environment."""
    secrets = tmp_path / "worker-secrets"
    secrets.mkdir()
    started: list[WorkerProcess] = []

    def start(
        settings: Settings,
        name: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        environment = {**settings_env(settings, str(secrets)), **(env or {})}
        worker = WorkerProcess(environment, tmp_path / f"{name}.log", command)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _slow(settings: Settings, **more: object) -> Settings:
    return settings.model_copy(update={"test_panel_delay_seconds": 0.3, **more})


async def _rendering(settings: Settings, comic_id: str) -> None:
    await wait_for(
        lambda: comic_status(settings, comic_id),
        lambda comic: comic.stage == "render" and comic.progress > 0.1,
        timeout=30,
        what=f"comic {comic_id} to be rendering",
    )


async def _completed(settings: Settings, comic_id: str, timeout: float = 60) -> None:
    await wait_for(
        lambda: comic_status(settings, comic_id),
        lambda comic: comic.status == "completed",
        timeout=timeout,
        what=f"comic {comic_id} to complete",
    )


def _assert_one_set_of_pages(settings: Settings, comic_id: str) -> None:
    comic = load_comic(settings, comic_id)
    pages = load_pages(settings, comic_id)
    storage = get_storage(settings)
    assert comic.page_count == len(pages) > 0
    assert [number for number, *_ in pages] == list(range(1, len(pages) + 1))
    assert len(storage.list_keys(f"comics/{comic_id}/pages/")) == len(pages)
    assert len(storage.list_keys(f"comics/{comic_id}/panels/")) == TINY_PANELS


async def test_kill_9_mid_job_then_another_worker_completes_it_once(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    settings = _slow(queue_settings)
    comic_id = create_tiny_comic(settings)
    first = start_worker(settings, "first")
    await queue_client.enqueue_comic(settings, comic_id)
    await _rendering(settings, comic_id)

    first.signal(signal.SIGKILL)
    assert await first.wait(10) == -signal.SIGKILL
    assert await queue_client.job_state(settings, comic_id) == "active"  # held by the dead

    second = start_worker(settings, "second")
    await _completed(settings, comic_id)
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0, second.output()

    comic = load_comic(settings, comic_id)
    assert comic.attempts == 2
    _assert_one_set_of_pages(settings, comic_id)
    events = [
        f for _, f in await queue_events(redis_client, settings) if f.get("jobId") == comic_id
    ]
    assert [e["event"] for e in events].count("stalled") == 1
    assert [e["event"] for e in events].count("completed") == 1
    assert await queue_client.job_state(settings, comic_id) == "completed"


async def test_job_that_stalls_too_often_is_failed_in_postgresql(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    # With no stall allowed, the job of a worker killed mid-job is failed by BullMQ's
    # stalled check instead of run again; the comic must not stay "running" for ever.
    settings = _slow(queue_settings, worker_max_stalled_count=0)
    comic_id = create_tiny_comic(settings)
    first = start_worker(settings, "first")
    await queue_client.enqueue_comic(settings, comic_id)
    await _rendering(settings, comic_id)
    first.signal(signal.SIGKILL)
    assert await first.wait(10) == -signal.SIGKILL

    second = start_worker(settings, "second")
    comic = await wait_for(
        lambda: comic_status(settings, comic_id),
        lambda comic: comic.status == "failed",
        timeout=30,
        what="the comic to fail",
    )
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0, second.output()
    assert comic.error is not None
    assert comic.error.startswith("job stalled more than allowable limit")
    assert comic.attempts == 1
    assert await queue_client.job_state(settings, comic_id) == "failed"


async def test_sigterm_finishes_the_job_in_hand_takes_no_new_one_and_exits_0(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    port = free_port()
    settings = _slow(
        queue_settings,
        test_panel_delay_seconds=0.5,
        worker_metrics_port=port,
        shutdown_grace_seconds=60,
    )
    first, second = create_tiny_comic(settings, "First"), create_tiny_comic(settings, "Second")
    worker = start_worker(settings, "worker")
    await queue_client.enqueue_comic(settings, first)
    await _rendering(settings, first)

    # The worker's /metrics shows the queue (one job active, none waiting) and the stage
    # histogram of the job in hand.
    async def scrape() -> str:
        try:
            response = await asyncio.to_thread(
                httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=5
            )
        except httpx.HTTPError:
            return ""
        return response.text

    page = await wait_for(
        scrape,
        lambda text: 'morpheus_queue_jobs{state="active"} 1.0' in text,
        timeout=15,
        what="queue gauges on /metrics",
    )
    assert 'morpheus_queue_jobs{state="waiting"} 0.0' in page
    assert 'morpheus_job_stage_seconds_count{stage="segment"} 1.0' in page

    # A job enqueued now stays in the queue: the worker is asked to stop right away.
    await queue_client.enqueue_comic(settings, second)
    worker.signal(signal.SIGTERM)
    assert await worker.wait(60) == 0, worker.output()

    assert load_comic(settings, first).status == "completed"
    _assert_one_set_of_pages(settings, first)
    untouched = load_comic(settings, second)
    assert (untouched.status, untouched.attempts) == ("queued", 0)
    assert await queue_client.job_state(settings, second) == "waiting"
    assert await queue_client.live_workers(settings) == []


async def test_sigterm_past_the_grace_period_requeues_and_another_worker_completes(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    # A long lock: the job must come back through the requeue, not the stalled check.
    settings = _slow(
        queue_settings,
        test_panel_delay_seconds=0.5,
        shutdown_grace_seconds=0.5,
        worker_lock_seconds=120,
    )
    comic_id = create_tiny_comic(settings)
    first = start_worker(settings, "first")
    await queue_client.enqueue_comic(settings, comic_id)
    await _rendering(settings, comic_id)

    first.signal(signal.SIGTERM)
    assert await first.wait(20) == 0, first.output()
    assert await queue_client.job_state(settings, comic_id) == "waiting"
    assert load_comic(settings, comic_id).status == "running"
    assert "job moved back to the queue" in first.output()

    second = start_worker(settings, "second")
    await _completed(settings, comic_id)
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0, second.output()
    assert load_comic(settings, comic_id).attempts == 2
    _assert_one_set_of_pages(settings, comic_id)


# The tiny novel twenty times over (180 panels, about 40 pages): at A4 page size its
# pages take seconds to compose, all in one call of the pipeline, in one thread.
LONG_NOVEL = "\n\n".join([TINY_NOVEL] * 20)
A4_PAGES = {"panel_width": 160, "panel_height": 120, "page_width": 1240, "page_height": 1754}


def _create_comic(settings: Settings, text: str, options: dict[str, int]) -> str:
    with session_scope(settings) as session:
        comic = comics.create_comic(
            session, title="The Long Harbour", source_text=text, options=options
        )
        return str(comic.id)


def _step_log(*workers: WorkerProcess) -> list[dict[str, Any]]:
    """The comic job's log lines of these workers (JSON), oldest first."""
    lines = []
    for worker in workers:
        for line in worker.output().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("logger") == "morpheus.worker.comic_job":
                entry["at"] = datetime.fromisoformat(entry["timestamp"])
                lines.append(entry)
    return sorted(lines, key=lambda entry: entry["at"])


def _assert_attempts_never_overlap(log: list[dict[str, Any]], comic_id: str) -> int:
    """No file of the comic written by an attempt once a later attempt has started.

    Returns the number of attempts seen."""
    started = {
        entry["attempt"]: entry["at"]
        for entry in log
        if entry["event"] == "comic started" and entry["comic_id"] == comic_id
    }
    writes = [
        entry for entry in log if entry["event"] == "file stored" and entry["comic_id"] == comic_id
    ]
    assert writes, "no file stored in the step log"
    late = [
        (write["attempt"], write["key"], later)
        for write in writes
        for later, at in started.items()
        if later > write["attempt"] and write["at"] >= at
    ]
    assert late == [], f"written by an attempt after a later one started: {late}"
    return len(started)


async def test_sigterm_stops_a_cpu_bound_step_within_the_grace_period(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    # A long lock: the job must come back through the requeue, not the stalled check.
    grace = 1.0
    settings = queue_settings.model_copy(
        update={"shutdown_grace_seconds": grace, "worker_lock_seconds": 120}
    )
    comic_id = _create_comic(settings, LONG_NOVEL, A4_PAGES)
    first = start_worker(settings, "first")
    await queue_client.enqueue_comic(settings, comic_id)
    await wait_for(
        lambda: comic_status(settings, comic_id),
        lambda comic: comic.stage == "compose",
        timeout=60,
        what="the pages to be composing",
    )

    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    assert await first.wait(grace + 30) == 0, first.output()
    exit_seconds = time.monotonic() - signalled
    print(f"worker exited {exit_seconds:.2f} s after SIGTERM (grace {grace:g} s)")
    assert exit_seconds <= grace + 1.0, first.output()
    assert "job moved back to the queue" in first.output()
    assert await queue_client.job_state(settings, comic_id) == "waiting"

    second = start_worker(settings, "second")
    await _completed(settings, comic_id, timeout=120)
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0, second.output()
    assert load_comic(settings, comic_id).attempts == 2
    assert _assert_attempts_never_overlap(_step_log(first, second), comic_id) == 2


async def test_a_timed_out_attempt_stops_before_the_next_one_starts(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    # Each new panel waits 1.5 s in its thread and an attempt may last 2.3 s: every
    # attempt draws one new panel (with 0.8 s to spare on a busy machine) and times out
    # during the next, and BullMQ starts the next attempt well within the 0.7 s that
    # panel still had to go.
    settings = _slow(
        queue_settings,
        test_panel_delay_seconds=1.5,
        job_timeout_seconds=2.3,
        job_attempts=6,
        job_backoff_seconds=0.05,
    )
    comic_id = _create_comic(settings, TINY_NOVEL.split("* * *")[0], SMALL_OPTIONS)
    worker = start_worker(settings, "worker")
    await queue_client.enqueue_comic(settings, comic_id)
    await _completed(settings, comic_id, timeout=60)
    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0, worker.output()

    assert "comic job timed out after 2.3 s" in worker.output()
    attempts = _assert_attempts_never_overlap(_step_log(worker), comic_id)
    assert attempts == load_comic(settings, comic_id).attempts >= 3
    storage = get_storage(settings)
    assert len(storage.list_keys(f"comics/{comic_id}/panels/")) == 3


STUBBORN_WORKER = [sys.executable, str(Path(__file__).with_name("stubborn_worker.py"))]


async def test_a_step_that_ignores_its_stop_flag_holds_neither_the_exit_nor_the_job(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    # The job's thread spins for a minute without looking at its stop flag. The worker
    # still exits in time, and leaves the job active (its step ran to the very end of
    # the process), for the stalled check to hand on once the lock lapses. The spinning
    # thread holds the GIL for most of each switch interval, and on a busy machine the
    # event loop can go a second or more between two lock renewals: a 6 s lock keeps
    # the job this worker's until it exits, as production's 30 s does.
    grace = 1.0
    settings = queue_settings.model_copy(
        update={"shutdown_grace_seconds": grace, "worker_lock_seconds": 6.0}
    )
    job_id = str(uuid.uuid4())
    first = start_worker(settings, "stubborn", STUBBORN_WORKER)
    await queue_client.enqueue_comic(settings, job_id)
    await wait_for(
        lambda: queue_client.job_state(settings, job_id),
        lambda state: state == "active",
        timeout=30,
        what="the job to be taken",
    )
    await asyncio.sleep(0.5)  # the spinning thread is well under way

    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    assert await first.wait(grace + 30) == 0, first.output()
    exit_seconds = time.monotonic() - signalled
    print(f"worker exited {exit_seconds:.2f} s after SIGTERM (grace {grace:g} s)")
    # Far sooner than the minute the thread spins, with room for a busy machine.
    assert exit_seconds <= grace + 10.0, first.output()
    assert "job left for the stalled check" in first.output()
    assert "job moved back to the queue" not in first.output()
    assert await queue_client.job_state(settings, job_id) == "active", first.output()

    second = start_worker(settings, "second", STUBBORN_WORKER, {"STUBBORN_SECONDS": "0.1"})
    await wait_for(
        lambda: queue_client.job_state(settings, job_id),
        lambda state: state == "completed",
        timeout=30,
        what="the stalled job to be completed by another worker",
    )
    second.signal(signal.SIGTERM)
    assert await second.wait(30) == 0, second.output()
    events = [f for _, f in await queue_events(redis_client, settings) if f.get("jobId") == job_id]
    assert [e["event"] for e in events].count("stalled") == 1


async def test_a_drain_longer_than_the_lock_keeps_the_job_from_other_workers(
    queue_settings: Settings, redis_client: redis.Redis, start_worker
) -> None:
    # The job in hand takes 8 s, four times the 2 s lock, and another worker's stalled
    # check runs every second meanwhile: the draining worker keeps the job's lock, so the
    # job runs once, there, and is never handed on. Two jobs at a time: the worker also
    # waits for a second job when asked to stop, and BullMQ's loop, seeing that wait end,
    # stops renewing locks while the job in hand still runs.
    settings = queue_settings.model_copy(
        update={"shutdown_grace_seconds": 60.0, "worker_concurrency": 2}
    )
    job_id = str(uuid.uuid4())
    first = start_worker(settings, "draining", STUBBORN_WORKER, {"STUBBORN_SECONDS": "8"})
    await queue_client.enqueue_comic(settings, job_id)
    await wait_for(
        lambda: queue_client.job_state(settings, job_id),
        lambda state: state == "active",
        timeout=30,
        what="the job to be taken",
    )
    first.signal(signal.SIGTERM)
    other = start_worker(settings, "other", STUBBORN_WORKER, {"STUBBORN_SECONDS": "0.1"})
    assert await first.wait(60) == 0, first.output()
    assert await queue_client.job_state(settings, job_id) == "completed"
    other.signal(signal.SIGTERM)
    assert await other.wait(30) == 0, other.output()
    assert "job finished" in first.output()
    assert job_id not in other.output(), other.output()
    events = [f for _, f in await queue_events(redis_client, settings) if f.get("jobId") == job_id]
    assert "stalled" not in [e["event"] for e in events], events


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts a throw-away redis-server on a random port (again after a stop)."""
    if not Path(REDIS_SERVER).exists() and shutil.which("redis-server") is None:
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER} missing)")
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else str(shutil.which("redis-server"))
    port = free_port()
    servers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        servers.append(server)
        return server

    start.port = port  # type: ignore[attr-defined]
    yield start
    for server in servers:
        if server.poll() is None:
            server.terminate()
            server.wait(10)


async def test_worker_reconnects_after_redis_restarts(
    queue_settings: Settings, private_redis, start_worker
) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    settings = queue_settings.model_copy(update={"redis_url": url})
    server = private_redis()
    client = redis.from_url(url)
    await wait_for(_ping(client), bool, timeout=10, what="the private redis-server")
    worker = start_worker(settings, "worker")

    before = create_tiny_comic(settings, "Before")
    await queue_client.enqueue_comic(settings, before)
    await _completed(settings, before)

    server.terminate()
    server.wait(10)
    await asyncio.sleep(1.0)
    private_redis()
    await wait_for(_ping(client), bool, timeout=10, what="the restarted redis-server")
    await client.aclose()

    after = create_tiny_comic(settings, "After")
    await queue_client.enqueue_comic(settings, after)
    await _completed(settings, after, timeout=90)
    assert worker.proc.poll() is None
    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0, worker.output()


def _ping(client: redis.Redis) -> Callable[[], object]:
    async def ping() -> bool:
        try:
            return bool(await client.ping())
        except redis.RedisError:
            return False

    return ping
