"""The reconciler on the real PostgreSQL and Redis: lost jobs come back, once.

Each test has a database of its own (the session's database holds other tests' queued
comics, which a reconciler would rightly queue again), a random queue name, and, for the
FLUSHALL test, a redis-server of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from bullmq.custom_errors import UnrecoverableError
from morpheus.db import comics, schema
from morpheus.db.session import session_scope
from morpheus.queue import client as queue_client
from morpheus.settings import Settings, SettingsError, load_settings
from morpheus.worker import reconciler
from morpheus.worker.comic_job import ComicJob
from morpheus.worker.runtime import WorkerRuntime
from prometheus_client import REGISTRY
from queue_helpers import (
    WorkerProcess,
    comic_status,
    create_tiny_comic,
    load_comic,
    load_pages,
    queue_events,
    settings_env,
    wait_for,
)
from sqlalchemy import text

REDIS_SERVER = "/usr/bin/redis-server"


@pytest.fixture
def rsettings(queue_settings: Settings, empty_database_url: str) -> Settings:
    """Queue settings on a database of this test's own, with a reconciler's bounds."""
    schema.upgrade(empty_database_url)
    return queue_settings.model_copy(
        update={
            "database_url": empty_database_url,
            "reconciler_grace_seconds": 30.0,
            "reconciler_stall_seconds": 120.0,
            "reconciler_batch_size": 100,
        }
    )


def backdate(settings: Settings, *comic_ids: str, seconds: int = 3600) -> None:
    """Make the comics look untouched for ``seconds`` (older than any grace or bound)."""
    with session_scope(settings) as session:
        session.execute(
            text(
                "UPDATE comics SET updated_at = now() - make_interval(secs => :s) "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"s": seconds, "ids": list(comic_ids)},
        )


def set_status(settings: Settings, comic_id: str, status: str) -> None:
    """Write a status as a database restored from an older backup would show it."""
    with session_scope(settings) as session:
        session.execute(
            text("UPDATE comics SET status = :s WHERE id = CAST(:id AS uuid)"),
            {"s": status, "id": comic_id},
        )


def start(settings: Settings, comic_id: str) -> None:
    with session_scope(settings) as session:
        comics.start_comic(session, comic_id)


async def lose_the_queue(client: redis.Redis, settings: Settings) -> None:
    """What a Redis that lost its data looks like to this queue: none of its keys."""
    keys = [key async for key in client.scan_iter(match=f"bull:{settings.queue_name}:*")]
    if keys:
        await client.delete(*keys)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def run_worker_until(
    settings: Settings, done: Callable[[], object], *, timeout: float = 60
) -> None:
    """An in-process worker running the real comic job until ``done()`` is true."""
    runtime = WorkerRuntime(settings, ComicJob(settings))
    task = asyncio.create_task(runtime.serve())
    try:
        await wait_for(done, bool, timeout=timeout, what="the worker to finish the comics")
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 30)


async def test_lost_jobs_are_queued_again_once_and_each_comic_completes_once(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    settings = rsettings
    queued = [create_tiny_comic(settings, f"Queued {n}") for n in (1, 2)]
    running = create_tiny_comic(settings, "Running")
    live = create_tiny_comic(settings, "Live")
    fresh = create_tiny_comic(settings, "Fresh")  # a submission still queueing it
    moving = create_tiny_comic(settings, "Moving")  # running, its progress recent
    for comic_id in (*queued, running, live):
        await queue_client.enqueue_comic(settings, comic_id)
    start(settings, running)
    start(settings, moving)
    backdate(settings, *queued, running, live)
    await lose_the_queue(redis_client, settings)
    await queue_client.enqueue_comic(settings, live)  # a job Redis still holds
    live_job = await redis_client.hget(f"bull:{settings.queue_name}:{live}", "timestamp")
    before = {
        (status, action): counter(
            "morpheus_reconciler_requeued_total", status=status, action=action
        )
        for status in ("queued", "running")
        for action in ("enqueue", "retry")
    }
    runs = counter("morpheus_reconciler_runs_total", outcome="ok")

    report = await reconciler.reconcile_once(settings)

    assert not report.locked and not report.more
    assert report.enqueued == [*queued, running]  # oldest first
    assert (report.retried, report.failures_recorded, report.live) == ([], [], 1)
    for comic_id in (*queued, running):
        assert await queue_client.job_state(settings, comic_id) == "waiting"
    # Left alone: the comic with a job, the fresh one, the one whose progress moves.
    assert await redis_client.hget(f"bull:{settings.queue_name}:{live}", "timestamp") == live_job
    for comic_id in (fresh, moving):
        assert await queue_client.job_state(settings, comic_id) == "unknown"
    assert (
        counter("morpheus_reconciler_requeued_total", status="queued", action="enqueue")
        == before[("queued", "enqueue")] + 2
    )
    assert (
        counter("morpheus_reconciler_requeued_total", status="running", action="enqueue")
        == before[("running", "enqueue")] + 1
    )
    assert counter("morpheus_reconciler_runs_total", outcome="ok") == runs + 1

    again = await reconciler.reconcile_once(settings)
    assert (again.enqueued, again.retried, again.live) == ([], [], 4)
    assert (await queue_client.queue_counts(settings))["waiting"] == 4

    made = (*queued, running, live)

    async def all_completed() -> bool:
        comics = [await comic_status(settings, comic_id) for comic_id in made]
        return all(comic.status == "completed" for comic in comics)

    await run_worker_until(settings, all_completed)
    events = await queue_events(redis_client, settings)
    for comic_id in made:
        comic = load_comic(settings, comic_id)
        # The running comic had been started once before its job was lost.
        assert comic.attempts == (2 if comic_id == running else 1), comic_id
        assert comic.page_count == len(load_pages(settings, comic_id)) > 0
        completed = [f for _, f in events if f.get("jobId") == comic_id]
        assert [f["event"] for f in completed].count("completed") == 1, comic_id
    assert load_comic(settings, fresh).status == "queued"
    assert (await reconciler.reconcile_once(settings)).enqueued == []


class Scripted:
    """A job handler that completes or fails each comic as told, and records nothing:
    as if PostgreSQL had been away when the job finished."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing

    async def run(self, comic_id: str) -> str:
        if comic_id in self.failing:
            raise UnrecoverableError("the renderer refused panel 3")
        return "completed"

    async def fail(self, comic_id: str, error: str) -> None:
        """Not recorded (the database was away)."""


async def test_finished_jobs_of_unfinished_comics_are_retried_or_their_failure_recorded(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    settings = rsettings
    cases = {
        # (status in PostgreSQL, what the job did) -> what the reconciler does
        "queued-completed": ("queued", "completed"),
        "queued-failed": ("queued", "failed"),
        "running-completed": ("running", "completed"),
        "running-failed": ("running", "failed"),
    }
    ids = {name: create_tiny_comic(settings, name) for name in cases}
    failing = {ids[name] for name, (_, job) in cases.items() if job == "failed"}
    runtime = WorkerRuntime(settings, Scripted(failing))
    task = asyncio.create_task(runtime.serve())
    try:
        for comic_id in ids.values():
            await queue_client.enqueue_comic(settings, comic_id)

        async def finished() -> list[str]:
            return [await queue_client.job_state(settings, i) for i in ids.values()]

        await wait_for(
            finished,
            lambda states: all(s in ("completed", "failed") for s in states),
            timeout=30,
            what="every job to finish",
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 30)
    for name, (status, _) in cases.items():
        set_status(settings, ids[name], status)
    backdate(settings, *ids.values())
    recorded = counter("morpheus_reconciler_failures_recorded_total")

    report = await reconciler.reconcile_once(settings)

    assert sorted(report.retried) == sorted(
        ids[name] for name in ("queued-completed", "queued-failed", "running-completed")
    )
    assert report.failures_recorded == [ids["running-failed"]]
    assert report.enqueued == []
    for name in ("queued-completed", "queued-failed", "running-completed"):
        assert await queue_client.job_state(settings, ids[name]) == "waiting", name
    failed = load_comic(settings, ids["running-failed"])
    assert (failed.status, failed.error) == ("failed", "the renderer refused panel 3")
    assert await queue_client.job_state(settings, ids["running-failed"]) == "failed"
    assert counter("morpheus_reconciler_failures_recorded_total") == recorded + 1

    again = await reconciler.reconcile_once(settings)
    assert (again.enqueued, again.retried, again.failures_recorded) == ([], [], [])


async def test_one_pass_at_a_time_and_at_most_a_batch_per_pass(
    rsettings: Settings, redis_client: redis.Redis
) -> None:
    settings = rsettings.model_copy(update={"reconciler_batch_size": 2})
    ids = [create_tiny_comic(settings, f"Lost {n}") for n in range(5)]
    backdate(settings, *ids)

    await redis_client.set(reconciler.lock_key(settings), "another-process", px=10_000)
    locked = counter("morpheus_reconciler_runs_total", outcome="locked")
    held = await reconciler.reconcile_once(settings)
    assert held.locked and held.enqueued == []
    assert counter("morpheus_reconciler_runs_total", outcome="locked") == locked + 1
    assert await redis_client.get(reconciler.lock_key(settings)) == "another-process"
    await redis_client.delete(reconciler.lock_key(settings))

    passes = [await reconciler.reconcile_once(settings) for _ in range(3)]
    assert [p.enqueued for p in passes] == [ids[0:2], ids[2:4], ids[4:5]]
    assert [p.more for p in passes] == [True, True, False]
    assert await redis_client.get(reconciler.lock_key(settings)) is None  # released


def test_the_stall_bound_must_outlast_a_live_attempt(tmp_path: Path) -> None:
    environ = {
        "MORPHEUS_DATABASE_URL": "postgresql://u@127.0.0.1/db",
        "MORPHEUS_REDIS_URL": "redis://127.0.0.1:6379/0",
        "MORPHEUS_SECRET_KEY": "test-only-secret-key-for-settings-0123456789",
        "MORPHEUS_JOB_TIMEOUT_SECONDS": "600",
        "MORPHEUS_RECONCILER_STALL_SECONDS": "600",
    }
    saved = {key: os.environ.get(key) for key in environ}
    os.environ.update(environ)
    try:
        with pytest.raises(SettingsError) as refused:
            load_settings(_secrets_dir=tmp_path)
        os.environ["MORPHEUS_RECONCILER_STALL_SECONDS"] = "601"
        assert load_settings(_secrets_dir=tmp_path).reconciler_stall_bound == 601
        # Unset, it follows the job's timeout: raising that alone never stops a start.
        del os.environ["MORPHEUS_RECONCILER_STALL_SECONDS"]
        assert load_settings(_secrets_dir=tmp_path).reconciler_stall_bound == 600 + 30 + 30 + 300
        os.environ["MORPHEUS_JOB_TIMEOUT_SECONDS"] = "3600"
        assert load_settings(_secrets_dir=tmp_path).reconciler_stall_bound == 3960
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert refused.value.lines == [
        "settings: MORPHEUS_RECONCILER_STALL_SECONDS must be longer than "
        "MORPHEUS_JOB_TIMEOUT_SECONDS, the worker lock plus the stalled-job interval, and "
        "three heartbeats (600 s), so that a comic a live worker is still making is never "
        "queued again"
    ]


def test_morpheus_reconcile_for_operators(rsettings: Settings, tmp_path: Path) -> None:
    settings = rsettings
    comic_id = create_tiny_comic(settings, "Orphan")
    backdate(settings, comic_id)
    secrets = tmp_path / "cli-secrets"
    secrets.mkdir()
    env = settings_env(settings, str(secrets))

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "morpheus.cli", "reconcile", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    first = reconcile()
    assert first.returncode == 0, first.stderr
    assert first.stdout == (
        "reconciled: 1 enqueued, 0 retried, 0 failure(s) recorded, 0 with a job left alone\n"
    )
    assert comic_id in first.stderr and '"comic requeued"' in first.stderr
    second = reconcile("--batch-size", "5")
    assert second.stdout.startswith("reconciled: 0 enqueued, 0 retried"), second.stderr
    assert asyncio.run(queue_client.job_state(settings, comic_id)) == "waiting"
    bad = reconcile("--batch-size", "0")
    assert (bad.returncode, bad.stderr) == (1, "morpheus: error: --batch-size must be at least 1\n")


# --- a whole Redis lost under a live worker ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A throw-away redis-server of this test's own (FLUSHALL touches nobody else)."""
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    server = subprocess.Popen([binary, "--port", str(port), *options], stdout=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.slow
async def test_flushall_under_a_live_worker_requeues_the_waiting_comic_not_the_running_one(
    rsettings: Settings, private_redis: str, tmp_path: Path
) -> None:
    settings = rsettings.model_copy(
        update={
            "redis_url": private_redis,
            "test_panel_delay_seconds": 0.4,
            "job_timeout_seconds": 30.0,
            "reconciler_interval_seconds": 0.5,
            "reconciler_grace_seconds": 1.0,
            "reconciler_stall_seconds": 40.0,
        }
    )
    client = redis.from_url(private_redis, decode_responses=True)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except redis.RedisError:
            return False

    await wait_for(answers, bool, timeout=10, what="the private redis-server")
    secrets = tmp_path / "worker-secrets"
    secrets.mkdir()
    worker = WorkerProcess(settings_env(settings, str(secrets)), tmp_path / "worker.log")
    try:
        running = create_tiny_comic(settings, "Running")
        await queue_client.enqueue_comic(settings, running)
        await wait_for(
            lambda: comic_status(settings, running),
            lambda comic: comic.stage == "render" and comic.progress > 0.1,
            timeout=30,
            what="the first comic to be rendering",
        )
        waiting = create_tiny_comic(settings, "Waiting")
        await queue_client.enqueue_comic(settings, waiting)  # one job at a time: it waits
        await client.flushall()

        for comic_id in (running, waiting):
            await wait_for(
                lambda comic_id=comic_id: comic_status(settings, comic_id),
                lambda comic: comic.status == "completed",
                timeout=60,
                what=f"comic {comic_id} to complete",
            )
        assert worker.proc.poll() is None, worker.output()
        # The comic in the worker's hands was never queued again; it completed once.
        assert load_comic(settings, running).attempts == 1
        assert load_comic(settings, waiting).attempts == 1
        requeued = [line for line in worker.output().splitlines() if "comic requeued" in line]
        assert len(requeued) == 1 and waiting in requeued[0], worker.output()
        assert not any(running in line for line in requeued)
        assert (await reconciler.reconcile_once(settings)).enqueued == []
        worker.signal(signal.SIGTERM)
        assert await worker.wait(30) == 0, worker.output()
    finally:
        worker.stop()
        await client.aclose()
