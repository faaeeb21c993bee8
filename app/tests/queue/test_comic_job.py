"""The comic job on the real PostgreSQL, the local provider and local storage."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as redis
from bullmq.custom_errors import UnrecoverableError
from morpheus.db import comics
from morpheus.db.session import session_scope
from morpheus.queue import client as queue_client
from morpheus.settings import Settings
from morpheus.storage import get_storage
from morpheus.worker.comic_job import ComicJob, run_comic
from morpheus.worker.runtime import WorkerRuntime
from prometheus_client import REGISTRY
from queue_helpers import (
    TINY_PANELS,
    comic_status,
    create_tiny_comic,
    load_comic,
    load_pages,
    wait_for,
)
from sqlalchemy import text

STAGES = ("segment", "render", "compose", "package")


def _files(root: Path, comic_id: str) -> dict[str, int]:
    """Every stored file of the comic with its modification time (ns)."""
    base = root / "comics" / comic_id
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file()}


def _histogram_count(stage: str) -> float:
    return REGISTRY.get_sample_value("morpheus_job_stage_seconds_count", {"stage": stage}) or 0.0


async def test_run_comic_makes_pages_and_packages_and_records_progress(
    queue_settings: Settings,
) -> None:
    comic_id = await asyncio.to_thread(create_tiny_comic, queue_settings)
    before = {stage: _histogram_count(stage) for stage in STAGES}

    assert await run_comic(queue_settings, comic_id) == "completed"

    comic = load_comic(queue_settings, comic_id)
    assert comic.status == "completed"
    assert comic.stage == "done"
    assert comic.progress == 1.0
    assert comic.attempts == 1
    assert comic.error is None
    assert set(comic.timings) == set(STAGES)
    assert all(seconds >= 0 for seconds in comic.timings.values())
    pages = load_pages(queue_settings, comic_id)
    assert comic.page_count == len(pages) >= 1
    assert [number for number, *_ in pages] == list(range(1, len(pages) + 1))
    assert all((width, height) == (124, 176) for *_, width, height in pages)
    storage = get_storage(queue_settings)
    for _, key, _, _ in pages:
        assert storage.get(key).startswith(b"\x89PNG")
    assert storage.get(f"comics/{comic_id}/comic.pdf").startswith(b"%PDF")
    assert storage.get(f"comics/{comic_id}/comic.cbz").startswith(b"PK")
    panels = storage.list_keys(f"comics/{comic_id}/panels/")
    assert len(panels) == TINY_PANELS
    for stage in STAGES:
        assert _histogram_count(stage) == before[stage] + 1


async def test_running_again_after_a_crash_reuses_everything_and_duplicates_nothing(
    queue_settings: Settings,
) -> None:
    comic_id = await asyncio.to_thread(create_tiny_comic, queue_settings)
    assert await run_comic(queue_settings, comic_id) == "completed"
    files = _files(queue_settings.storage_path, comic_id)
    pages = load_pages(queue_settings, comic_id)

    # A worker that died after the last step, before the job was acknowledged, leaves
    # the comic running; the job is delivered again.
    with session_scope(queue_settings) as session:
        session.execute(
            text("UPDATE comics SET status = 'running' WHERE id = :id"), {"id": comic_id}
        )
    assert await run_comic(queue_settings, comic_id) == "completed"

    assert _files(queue_settings.storage_path, comic_id) == files  # nothing redrawn
    assert load_pages(queue_settings, comic_id) == pages
    comic = load_comic(queue_settings, comic_id)
    assert (comic.status, comic.attempts, comic.page_count) == ("completed", 2, len(pages))


async def test_duplicate_delivery_of_a_finished_comic_does_nothing(
    queue_settings: Settings,
) -> None:
    comic_id = await asyncio.to_thread(create_tiny_comic, queue_settings)
    assert await run_comic(queue_settings, comic_id) == "completed"
    files = _files(queue_settings.storage_path, comic_id)

    assert await run_comic(queue_settings, comic_id) == "completed"
    assert _files(queue_settings.storage_path, comic_id) == files
    assert load_comic(queue_settings, comic_id).attempts == 1


async def cancel_while_rendering(settings: Settings) -> str:
    """Run a tiny comic, cancel it once rendering is under way; its id."""
    comic_id = await asyncio.to_thread(create_tiny_comic, settings)
    job = asyncio.create_task(run_comic(settings, comic_id))
    await wait_for(
        lambda: comic_status(settings, comic_id),
        lambda comic: comic.stage == "render" and comic.progress > 0.1,
        timeout=10,
        what="rendering to be under way",
    )
    with session_scope(settings) as session:
        comics.cancel_comic(session, comic_id)
    assert await asyncio.wait_for(job, 10) == "cancelled"
    return comic_id


async def test_cancel_stops_the_job_between_steps(queue_settings: Settings) -> None:
    settings = queue_settings.model_copy(update={"test_panel_delay_seconds": 0.2})
    comic_id = await cancel_while_rendering(settings)
    comic = load_comic(settings, comic_id)
    assert comic.status == "cancelled"
    storage = get_storage(settings)
    assert 0 < len(storage.list_keys(f"comics/{comic_id}/panels/")) < TINY_PANELS
    assert load_pages(settings, comic_id) == []
    assert not storage.exists(f"comics/{comic_id}/comic.pdf")


async def test_the_local_providers_panel_time_holds_outside_tests(queue_settings: Settings) -> None:
    """A staging platform without a GPU can make its panels take time (deploy drills):
    the job is still drawing when it is cancelled, as with the test-only delay."""
    settings = queue_settings.model_copy(
        update={"environment": "staging", "provider": "local", "local_panel_seconds": 0.2}
    )
    comic_id = await cancel_while_rendering(settings)
    drawn = get_storage(settings).list_keys(f"comics/{comic_id}/panels/")
    assert 0 < len(drawn) < TINY_PANELS


async def test_missing_comic_and_bad_options_are_unrecoverable(queue_settings: Settings) -> None:
    with pytest.raises(UnrecoverableError, match="does not exist"):
        await run_comic(queue_settings, str(uuid.uuid4()))

    with session_scope(queue_settings) as session:
        comic = comics.create_comic(
            session, title="Bad", source_text="Some words.", options={"panel_width": 10**6}
        )
    with pytest.raises(UnrecoverableError, match="panel_width"):
        await run_comic(queue_settings, str(comic.id))


async def test_final_failure_is_recorded_in_postgresql_with_the_error(
    queue_settings: Settings, redis_client: redis.Redis
) -> None:
    # Each attempt times out in the middle of rendering; after the last one the comic is
    # failed in PostgreSQL with the error, and every attempt was counted.
    settings = queue_settings.model_copy(
        update={
            "test_panel_delay_seconds": 0.3,
            "job_timeout_seconds": 0.8,
            "job_attempts": 2,
            "job_backoff_seconds": 0.1,
        }
    )
    comic_id = await asyncio.to_thread(create_tiny_comic, settings)
    runtime = WorkerRuntime(settings, ComicJob(settings))
    task = asyncio.create_task(runtime.serve())
    try:
        await queue_client.enqueue_comic(settings, comic_id)
        comic = await wait_for(
            lambda: comic_status(settings, comic_id),
            lambda comic: comic.status == "failed",
            timeout=30,
            what="the comic to fail",
        )
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, 20)
    assert comic.error == "comic job timed out after 0.8 s"
    assert comic.attempts == 2
    assert comic.finished_at is not None
    assert await queue_client.job_state(settings, comic_id) == "failed"
