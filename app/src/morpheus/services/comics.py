"""Comics as their readers and operators see them: one comic and its pages, a page's
image, the PDF or CBZ, a list of comics; cancelling and retrying one.

Database work is synchronous (SQLAlchemy sessions) and runs in the thread pool; queue
calls are asynchronous and time-bounded by the queue client. Reads run once more when
their connection died under them (``retry_on_disconnect``); a database that cannot
answer raises SQLAlchemy's error, which the sites answer with 503 and ``Retry-After``.
A read whose caller passes ``standby=True`` may be answered by the hot standby
(:mod:`morpheus.db.standby`); every other read, and every write, is the primary's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from morpheus.db import comics
from morpheus.db.models import ApiKey, Comic, ComicStatus, Page
from morpheus.db.session import retry_on_disconnect
from morpheus.logging import get_logger
from morpheus.queue import client as queue_client
from morpheus.services.context import AppContext
from morpheus.services.errors import ENQUEUE_FAILED_MESSAGE, Conflict, NotFound, Unavailable

# Its lines keep the logger name they had when this lived in the API package, so that
# log queries selecting on it still find them.
log = get_logger("morpheus.api.services")

T = TypeVar("T")


@dataclass(frozen=True)
class ComicView:
    """A comic and its pages, read in one session."""

    comic: Comic
    pages: list[Page]


OPERATOR = "operator"
Viewer = ApiKey | str | None
"""Who asks: an API key (sees the comics it submitted), ``None`` for the storefront (sees
the comics submitted there) or :data:`OPERATOR` (a dashboard user, sees every comic)."""


def _visible(comic: Comic | None, viewer: Viewer) -> bool:
    if comic is None:
        return False
    if viewer == OPERATOR:
        return True
    if isinstance(viewer, ApiKey):
        return comic.api_key_id == viewer.id
    return comic.api_key_id is None


async def _read(
    ctx: AppContext,
    read: Callable[[Session], T],
    *,
    standby: bool,
    missing: Callable[[T], bool] | None = None,
) -> T:
    """``read(session)`` in a session of its own: on the primary, or, with ``standby``, on
    the hot standby when it is healthy (the primary's answer when ``missing`` is true of
    the standby's)."""
    if standby:
        return await run_in_threadpool(ctx.reads.run, read, missing=missing)

    def on_primary() -> T:
        with ctx.sessions() as session:
            return read(session)

    return await run_in_threadpool(retry_on_disconnect(on_primary))


async def get_comic(
    ctx: AppContext, comic_id: str, api_key: Viewer = None, *, standby: bool = False
) -> ComicView:
    """The comic and its pages, or :class:`NotFound` (also for a comic the viewer may not
    see: its existence is not revealed).

    ``standby``: a status poll, which the hot standby may answer. A comic the standby does
    not show (a comic submitted a moment ago that it has not replayed yet) is looked for on
    the primary: the poll that follows a submission finds it."""

    def read(session: Session) -> ComicView | None:
        found = comics.get_comic_with_pages(session, comic_id)
        if found is None or not _visible(found[0], api_key):
            return None
        return ComicView(*found)

    view = await _read(ctx, read, standby=standby, missing=lambda found: found is None)
    if view is None:
        raise NotFound("No comic with this id.")
    return view


async def page_image(ctx: AppContext, comic_id: str, number: int, api_key: Viewer = None) -> bytes:
    """The PNG of page ``number`` (1-based) of a completed comic."""
    view = await get_comic(ctx, comic_id, api_key)
    _require_completed(view.comic)
    page = next((p for p in view.pages if p.number == number), None)
    if page is None:
        raise NotFound(f"This comic has no page {number}.")
    return await _read_storage(ctx, page.storage_key)


async def archive(ctx: AppContext, comic_id: str, kind: str, api_key: Viewer = None) -> bytes:
    """The comic as ``pdf`` or ``cbz``."""
    view = await get_comic(ctx, comic_id, api_key)
    _require_completed(view.comic)
    return await _read_storage(ctx, f"comics/{view.comic.id}/comic.{kind}")


def _require_completed(comic: Comic) -> None:
    if comic.status != ComicStatus.COMPLETED.value:
        raise Conflict(f"The comic is not ready yet (it is {comic.status}).")


async def _read_storage(ctx: AppContext, key: str) -> bytes:
    from morpheus.storage import get_storage

    storage = get_storage(ctx.settings)

    def read() -> bytes | None:
        if not storage.exists(key):
            return None
        return storage.get(key)

    data = await run_in_threadpool(read)
    if data is None:
        log.error("stored output missing", key=key)
        raise NotFound("The file of this comic is missing.")
    return data


async def cancel_comic(ctx: AppContext, comic_id: str, api_key: Viewer = None) -> Comic:
    """Cancel a queued or running comic (its waiting job is removed from the queue)."""
    await get_comic(ctx, comic_id, api_key)

    def cancel() -> Comic:
        with ctx.sessions() as session:
            return comics.cancel_comic(session, comic_id)

    try:
        comic = await run_in_threadpool(cancel)
    except comics.InvalidTransition as exc:
        raise Conflict(f"The comic cannot be cancelled: it is {exc.status}.") from None
    try:
        await queue_client.cancel_comic(ctx.settings, str(comic.id))
    except Exception as exc:
        # The worker checks the status between steps, so the cancel still takes effect.
        log.warning("could not remove the queued job", comic_id=str(comic.id), error=repr(exc))
    return comic


async def retry_comic(ctx: AppContext, comic_id: str) -> Comic:
    """Queue a failed or cancelled comic again (an operator's action)."""

    def reset() -> Comic:
        with ctx.sessions() as session:
            return comics.reset_for_retry(session, comic_id)

    try:
        comic = await run_in_threadpool(reset)
    except comics.ComicNotFound:
        raise NotFound("No comic with this id.") from None
    except comics.InvalidTransition as exc:
        raise Conflict(f"The comic cannot be retried: it is {exc.status}.") from None
    try:
        await queue_client.retry_comic(ctx.settings, str(comic.id))
    except Exception as exc:
        log.error("retry could not be queued", comic_id=str(comic.id), error=repr(exc))
        await run_in_threadpool(_fail, ctx, comic.id, ENQUEUE_FAILED_MESSAGE)
        raise Unavailable(
            "The queue is not available right now; please try again shortly."
        ) from exc
    return comic


async def list_comics(
    ctx: AppContext,
    *,
    limit: int = 50,
    offset: int = 0,
    status: str | None = None,
    standby: bool = False,
) -> tuple[list[Comic], int]:
    """A page of comics, newest first, and how many there are in all. ``standby``: the
    hot standby may answer (a listing a few seconds old will do)."""

    def read(session: Session) -> tuple[list[Comic], int]:
        found = comics.list_comics(session, limit=limit, offset=offset, status=status)
        return found, comics.count_comics(session, status=status)

    return await _read(ctx, read, standby=standby)


def _fail(ctx: AppContext, comic_id: uuid.UUID, message: str) -> None:
    with ctx.sessions() as session:
        comics.fail_comic(session, comic_id, message)
