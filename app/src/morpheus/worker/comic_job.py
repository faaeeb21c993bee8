"""The comic job: segment -> render -> compose -> package, for one comic.

Delivery is at least once (a worker may die mid-job and the job runs again), so every
step is idempotent: panels and pages already in storage are reused, not drawn again;
page rows are upserts; the PDF and CBZ are written only when missing. Progress and
per-stage timings go to PostgreSQL as the job runs. Before each step the progress update
(a conditional ``UPDATE ... WHERE status = 'running'``) re-checks the comic's status, so a
cancelled comic stops at the next step.

Everything blocking (SQL, drawing, composing, packaging, storage) runs in a thread, so
the event loop stays free to renew BullMQ's job locks and write the worker heartbeat.
Those threads watch the attempt's stop flag (:mod:`morpheus.worker.threads`): drawing,
composing and packaging check it at every panel and page, and nothing is written once
it is set, so an attempt that timed out or was stopped writes no file after it ended.

Comic options read here (all optional): ``panel_width``/``panel_height`` (pixels of a
rendered panel) and ``page_width``/``page_height`` (pixels of a composed page).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog
from bullmq.custom_errors import UnrecoverableError

from morpheus import cancellation
from morpheus.db import comics
from morpheus.db.comics import ComicNotFound, InvalidTransition
from morpheus.db.models import ComicStage, ComicStatus
from morpheus.db.session import session_scope
from morpheus.pipeline import compose
from morpheus.pipeline.package import ComicMetadata, build_cbz, build_pdf, png_size
from morpheus.pipeline.script import Panel, Script
from morpheus.pipeline.segment import segment
from morpheus.providers import PanelProvider, ProviderError, get_provider
from morpheus.settings import Settings
from morpheus.storage import Storage, cbz_key, get_storage, page_key, panel_key, pdf_key
from morpheus.worker import threads
from morpheus.worker.metrics import JOB_STAGE_SECONDS

log = structlog.stdlib.get_logger("morpheus.worker.comic_job")

T = TypeVar("T")

# Where each stage starts on the 0..1 progress scale.
PROGRESS = {
    ComicStage.SEGMENT: 0.0,
    ComicStage.RENDER: 0.05,
    ComicStage.COMPOSE: 0.85,
    ComicStage.PACKAGE: 0.95,
}
PNG = "image/png"
PDF = "application/pdf"
CBZ = "application/vnd.comicbook+zip"
# Bounds of the size options (pixels).
MIN_SIZE, MAX_SIZE = 16, 4096


class Stopped(Exception):
    """The comic left the ``running`` status under the job (cancelled, or finished)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"comic is {status}")
        self.status = status


def _size(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIZE <= value <= MAX_SIZE:
        raise UnrecoverableError(
            f"option {name} must be a whole number from {MIN_SIZE} to {MAX_SIZE}"
        )
    return value


async def _db(settings: Settings, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one repository function in its own session, in a thread."""

    def call() -> T:
        with session_scope(settings) as session:
            return operation(session, *args, **kwargs)

    return await threads.to_thread(call)


class _Attempt:
    """One attempt at one comic: the stages, each recording progress and timing."""

    def __init__(
        self, settings: Settings, comic_id: str, number: int, options: Mapping[str, Any]
    ) -> None:
        self.settings = settings
        self.comic_id = comic_id
        self.storage: Storage = get_storage(settings)
        self.panel_size = (
            _size(options, "panel_width", compose.PANEL_WIDTH),
            _size(options, "panel_height", compose.PANEL_HEIGHT),
        )
        self.page_size = (
            _size(options, "page_width", compose.PAGE_WIDTH),
            _size(options, "page_height", compose.PAGE_HEIGHT),
        )
        test_env = settings.environment in ("test", "development")
        test_delay = settings.test_panel_delay_seconds if test_env else 0.0
        local_delay = settings.local_panel_seconds if settings.provider == "local" else 0.0
        self.panel_delay = max(test_delay, local_delay)
        self.log = log.bind(comic_id=comic_id, attempt=number)

    async def progress(self, stage: ComicStage, progress: float) -> None:
        """Record stage and progress; raise :class:`Stopped` if the comic is not running."""
        try:
            await _db(self.settings, comics.set_stage, self.comic_id, stage.value, progress)
        except InvalidTransition as exc:
            raise Stopped(exc.status) from None

    async def timed(self, stage: ComicStage, started: float) -> None:
        seconds = time.monotonic() - started
        JOB_STAGE_SECONDS.labels(stage=stage.value).observe(seconds)
        await _db(self.settings, comics.record_timing, self.comic_id, stage.value, seconds)
        self.log.info("stage done", stage=stage.value, seconds=round(seconds, 3))

    async def segment(self, text: str) -> Script:
        started = time.monotonic()
        await self.progress(ComicStage.SEGMENT, PROGRESS[ComicStage.SEGMENT])
        script = await threads.to_thread(segment, text)
        if script.panel_count == 0:
            raise UnrecoverableError("the novel gave no panels to draw")
        await self.timed(ComicStage.SEGMENT, started)
        return script

    async def render(self, panels: list[Panel]) -> list[bytes]:
        started = time.monotonic()
        provider = get_provider(self.settings)
        start, end = PROGRESS[ComicStage.RENDER], PROGRESS[ComicStage.COMPOSE]
        images: list[bytes] = []
        for done, panel in enumerate(panels):
            await self.progress(ComicStage.RENDER, start + (end - start) * done / len(panels))
            images.append(await threads.to_thread(self._panel, provider, panel))
        await self.timed(ComicStage.RENDER, started)
        return images

    def _panel(self, provider: PanelProvider, panel: Panel) -> bytes:
        key = panel_key(self.comic_id, panel.number)
        if self.storage.exists(key):
            return self.storage.get(key)
        if self.panel_delay:
            cancellation.sleep(self.panel_delay)
        try:
            image = provider.render(panel, *self.panel_size)
        except ProviderError as exc:
            if not exc.retryable:
                raise UnrecoverableError(f"panel {panel.number}: {exc.message}") from exc
            raise
        self._put(key, image, PNG)
        return image

    async def compose(
        self, script: Script, panels: list[Panel], images: list[bytes], title: str
    ) -> list[bytes]:
        started = time.monotonic()
        await self.progress(ComicStage.COMPOSE, PROGRESS[ComicStage.COMPOSE])
        pages = await threads.to_thread(
            compose.compose_pages,
            list(zip(panels, images, strict=True)),
            title=title,
            chapter_titles=script.chapter_titles(),
            page_width=self.page_size[0],
            page_height=self.page_size[1],
        )
        for number, png in enumerate(pages, start=1):
            await self.progress(ComicStage.COMPOSE, PROGRESS[ComicStage.COMPOSE])
            key = page_key(self.comic_id, number)
            await threads.to_thread(self._store, key, PNG, lambda png=png: png)
            width, height = png_size(png)
            await _db(self.settings, comics.upsert_page, self.comic_id, number, key, width, height)
        await self.timed(ComicStage.COMPOSE, started)
        return pages

    async def package(self, pages: list[bytes], title: str) -> None:
        started = time.monotonic()
        await self.progress(ComicStage.PACKAGE, PROGRESS[ComicStage.PACKAGE])
        pdf_path = pdf_key(self.comic_id)
        await threads.to_thread(self._store, pdf_path, PDF, lambda: build_pdf(pages, title=title))
        await self.progress(ComicStage.PACKAGE, PROGRESS[ComicStage.PACKAGE])
        metadata = ComicMetadata(title=title)
        cbz_path = cbz_key(self.comic_id)
        await threads.to_thread(self._store, cbz_path, CBZ, lambda: build_cbz(pages, metadata))
        await self.timed(ComicStage.PACKAGE, started)

    def _store(self, key: str, content_type: str, build: Callable[[], bytes]) -> None:
        """Write ``build()`` under ``key`` unless an earlier attempt already did."""
        if not self.storage.exists(key):
            self._put(key, build(), content_type)

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        cancellation.check()  # a stopped attempt writes nothing more
        self.storage.put(key, data, content_type)
        self.log.debug("file stored", key=key)


async def run_comic(settings: Settings, comic_id: str) -> str:
    """Make the comic ``comic_id``; return ``completed``, or the status that stopped it.

    A comic that is already completed, cancelled or failed is left as it is (a duplicate
    delivery). Raises ``UnrecoverableError`` for what no retry can fix.
    """
    comic_id = str(comic_id)
    try:
        comic = await _db(settings, comics.start_comic, comic_id)
    except ComicNotFound:
        raise UnrecoverableError(f"comic {comic_id} does not exist") from None
    except InvalidTransition as exc:
        log.info("comic not runnable, job skipped", comic_id=comic_id, status=exc.status)
        return exc.status
    attempt = _Attempt(settings, comic_id, comic.attempts, comic.options or {})
    attempt.log.info("comic started")
    source = await _db(settings, comics.get_comic, comic_id, with_source=True)
    if source is None:
        raise UnrecoverableError(f"comic {comic_id} does not exist")
    try:
        script = await attempt.segment(source.source_text)
        panels = list(script.panels())
        images = await attempt.render(panels)
        pages = await attempt.compose(script, panels, images, comic.title)
        await attempt.package(pages, comic.title)
    except Stopped as stop:
        attempt.log.info("comic stopped", status=stop.status)
        return stop.status
    try:
        await _db(settings, comics.complete_comic, comic_id, len(pages))
    except InvalidTransition as exc:
        return exc.status
    attempt.log.info("comic completed", pages=len(pages))
    return ComicStatus.COMPLETED.value


async def record_failure(settings: Settings, comic_id: str, error: str) -> None:
    """Record the final failure of the comic (a cancelled comic stays cancelled)."""
    try:
        await _db(settings, comics.fail_comic, comic_id, error)
    except (InvalidTransition, ComicNotFound) as exc:
        log.warning("failure not recorded", comic_id=comic_id, reason=str(exc))


class ComicJob:
    """The comic job as the worker runtime runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def run(self, comic_id: str) -> str:
        return await run_comic(self.settings, comic_id)

    async def fail(self, comic_id: str, error: str) -> None:
        await record_failure(self.settings, comic_id, error)
