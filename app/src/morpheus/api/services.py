"""What the routes do, in terms of the persistence functions, the queue, ingest and storage.

Routes call these functions and never reach PostgreSQL or Redis themselves. Database
work is synchronous (SQLAlchemy sessions) and runs in the thread pool; queue calls are
asynchronous and time-bounded by the queue client. Reads run once more when their
connection died under them (``retry_on_disconnect``); a database that cannot answer
raises SQLAlchemy's error, which the sites answer with 503 and ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from morpheus.api import extraction
from morpheus.api.context import AppContext
from morpheus.db import api_keys, comics, idempotency_keys, users
from morpheus.db.models import ApiKey, Comic, ComicStatus, Page, User
from morpheus.db.session import retry_on_disconnect
from morpheus.logging import get_logger
from morpheus.pipeline.ingest import NovelRejected
from morpheus.queue import client as queue_client

log = get_logger(__name__)

ENQUEUE_FAILED_MESSAGE = "The comic could not be queued; please submit it again."
# A submission waits this long for the queue. Should the job still arrive after the comic
# was marked failed, the worker skips it (a failed comic cannot be started).
ENQUEUE_TIMEOUT_SECONDS = 5.0
# A page waits this long for the queue's figures before showing it without them.
OVERVIEW_TIMEOUT_SECONDS = 3.0
QUEUE_UNAVAILABLE_MESSAGE = "The queue is not available right now; please try again shortly."
DATABASE_UNAVAILABLE_MESSAGE = (
    "The database is not available right now; please try again in a few seconds."
)
# Retry-After of a 503 for an unreachable database: PostgreSQL restarts in seconds.
DATABASE_RETRY_AFTER_SECONDS = 5


class ServiceError(Exception):
    """A request that cannot be served, with the HTTP status and a message for people."""

    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        fields: Mapping[str, str] | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # What the person typed, so that a form can be shown again without losing it.
        self.fields: dict[str, str] = dict(fields or {})
        # The limit a refused request passed (a setting's name), for API clients.
        self.limit = limit
        if status_code is not None:
            self.status_code = status_code


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Unavailable(ServiceError):
    status_code = 503


class Rejected(ServiceError):
    """The novel was refused (413 too large, 422 unusable)."""


class KeyReused(Rejected):
    """The idempotency key was used before for another submission (422)."""

    status_code = 422


@dataclass(frozen=True)
class Submission:
    """A novel as it arrived: raw bytes plus what the client said about them."""

    title: str
    data: bytes
    filename: str | None
    content_type: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    api_key_id: uuid.UUID | None = None
    client_addr: str | None = None
    # The client's Idempotency-Key, or the storefront form's one-time token.
    idempotency_key: str | None = None

    @property
    def idempotency_scope(self) -> str:
        """Whose keys these are: an API key's own, or the storefront's (random tokens)."""
        return f"key:{self.api_key_id}" if self.api_key_id else "storefront"

    def fingerprint(self) -> str:
        """SHA-256 of what makes two submissions the same: the novel's bytes, title, file
        name, content type and options (not the request's bytes: a multipart boundary
        changes from one try to the next)."""
        described = json.dumps(
            {
                "title": self.title,
                "filename": self.filename,
                "content_type": self.content_type,
                "options": dict(self.options),
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(described.encode("utf-8"))
        digest.update(b"\0")
        digest.update(self.data)
        return digest.hexdigest()


@dataclass(frozen=True)
class Submitted:
    """A submission's comic; ``replayed`` when its idempotency key had made it before."""

    comic: Comic
    replayed: bool = False


def check_idempotency_key(value: str) -> str:
    """``value`` if it can be an idempotency key, else :class:`Rejected` (422)."""
    if not idempotency_keys.IDEMPOTENCY_KEY_RE.match(value):
        raise Rejected(
            f"Idempotency-Key must be 1-{idempotency_keys.MAX_IDEMPOTENCY_KEY_LENGTH} characters: "
            "letters, digits, - _ . ~ : + / =",
            status_code=422,
        )
    return value


@dataclass(frozen=True)
class ComicView:
    """A comic and its pages, read in one session."""

    comic: Comic
    pages: list[Page]


# --- comics -----------------------------------------------------------------------------


async def submit_comic(ctx: AppContext, submission: Submission) -> Submitted:
    """Check the novel, store the comic and queue its job.

    A refused novel stores nothing. When the queue cannot take the job after the comic
    was stored, the comic is marked failed (so it is visible, and an operator can retry
    it) and :class:`Unavailable` is raised.

    With an idempotency key, a submission repeated with the same key (in the same scope)
    gives the comic the first one made, ``replayed``, and stores and queues nothing; the
    same key with another novel, title or style is :class:`KeyReused`. When the queue
    cannot take the job, the key is released with the failed comic, so that the client's
    retry with the same key makes a new comic.
    """
    key = submission.idempotency_key
    fingerprint = submission.fingerprint() if key is not None else ""
    if key is not None:
        check_idempotency_key(key)

        def find() -> Comic | None:
            with ctx.sessions() as session:
                return idempotency_keys.find_idempotent_comic(
                    session,
                    scope=submission.idempotency_scope,
                    key=key,
                    fingerprint=fingerprint,
                )

        try:
            earlier = await run_in_threadpool(retry_on_disconnect(find))
        except idempotency_keys.IdempotencyConflict as exc:
            raise _key_reused(exc) from None
        if earlier is not None:
            log.info("submission replayed", comic_id=str(earlier.id))
            return Submitted(earlier, replayed=True)
    try:
        text = await extraction.extract(
            ctx.settings,
            ctx.extractions,
            submission.data,
            submission.filename,
            submission.content_type,
        )
    except NovelRejected as exc:
        log.info("novel refused", status=exc.status_code, limit=exc.limit)
        raise Rejected(exc.message, status_code=exc.status_code, limit=exc.limit) from None

    fields: dict[str, Any] = {
        "title": submission.title,
        "source_text": text,
        "options": dict(submission.options),
        "api_key_id": submission.api_key_id,
        "client_addr": submission.client_addr,
    }

    def create() -> idempotency_keys.CreatedOnce:
        with ctx.sessions() as session:
            if key is None:
                return idempotency_keys.CreatedOnce(comics.create_comic(session, **fields), True)
            return idempotency_keys.create_comic_once(
                session,
                scope=submission.idempotency_scope,
                key=key,
                fingerprint=fingerprint,
                **fields,
            )

    try:
        comic, created = await run_in_threadpool(create)
    except idempotency_keys.IdempotencyConflict as exc:
        raise _key_reused(exc) from None
    if not created:  # a request with the same key got there first
        log.info("submission replayed", comic_id=str(comic.id))
        return Submitted(comic, replayed=True)
    try:
        async with asyncio.timeout(ENQUEUE_TIMEOUT_SECONDS):
            await queue_client.enqueue_comic(ctx.settings, str(comic.id))
    except Exception as exc:
        log.error("enqueue failed, comic marked failed", comic_id=str(comic.id), error=repr(exc))
        await run_in_threadpool(_fail, ctx, comic.id, ENQUEUE_FAILED_MESSAGE, True)
        raise Unavailable(
            "The queue is not available right now; please try again shortly."
        ) from exc
    log.info("comic submitted", comic_id=str(comic.id), words=comic.word_count)
    return Submitted(comic)


def _key_reused(exc: idempotency_keys.IdempotencyConflict) -> KeyReused:
    return KeyReused(
        f"Idempotency-Key conflict: the key {exc.key!r} was already used for another "
        f"submission (comic {exc.comic_id}); use a new key for a new novel.",
        status_code=422,
    )


def _fail(ctx: AppContext, comic_id: uuid.UUID, message: str, release_keys: bool = False) -> None:
    with ctx.sessions() as session:
        if release_keys:
            idempotency_keys.release_idempotency_keys(session, comic_id)
        comics.fail_comic(session, comic_id, message)


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


async def get_comic(ctx: AppContext, comic_id: str, api_key: Viewer = None) -> ComicView:
    """The comic and its pages, or :class:`NotFound` (also for a comic the viewer may not
    see: its existence is not revealed)."""

    def read() -> ComicView | None:
        with ctx.sessions() as session:
            comic = comics.get_comic(session, comic_id)
            if not _visible(comic, api_key):
                return None
            assert comic is not None
            return ComicView(comic, comics.list_pages(session, comic.id))

    view = await run_in_threadpool(retry_on_disconnect(read))
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
    ctx: AppContext, *, limit: int = 50, offset: int = 0, status: str | None = None
) -> tuple[list[Comic], int]:
    """A page of comics, newest first, and how many there are in all."""

    def read() -> tuple[list[Comic], int]:
        with ctx.sessions() as session:
            found = comics.list_comics(session, limit=limit, offset=offset, status=status)
            return found, comics.count_comics(session, status=status)

    return await run_in_threadpool(retry_on_disconnect(read))


# --- queue ------------------------------------------------------------------------------


async def queue_overview(
    ctx: AppContext,
) -> tuple[dict[str, int] | None, list[dict[str, Any]] | None]:
    """Jobs per state and the live workers; None for a part the queue could not tell."""
    counts: dict[str, int] | None
    workers: list[dict[str, Any]] | None
    try:
        async with asyncio.timeout(OVERVIEW_TIMEOUT_SECONDS):
            counts = await queue_client.queue_counts(ctx.settings)
    except Exception as exc:
        log.warning("queue counts unavailable", error=repr(exc))
        counts = None
    try:
        async with asyncio.timeout(OVERVIEW_TIMEOUT_SECONDS):
            workers = await queue_client.live_workers(ctx.settings)
    except Exception as exc:
        log.warning("live workers unavailable", error=repr(exc))
        workers = None
    return counts, workers


# --- identities -------------------------------------------------------------------------


async def authenticate_api_key(ctx: AppContext, key: str) -> ApiKey | None:
    """The active API key for this plaintext key, or None."""

    def verify() -> ApiKey | None:
        with ctx.sessions() as session:
            return api_keys.verify_api_key(session, key)

    return await run_in_threadpool(retry_on_disconnect(verify))


async def authenticate_user(ctx: AppContext, username: str, password: str) -> User | None:
    """The active user with these credentials, or None."""
    if "\x00" in username:  # PostgreSQL cannot hold a NUL, so no user is named with one
        return None

    def verify() -> User | None:
        with ctx.sessions() as session:
            return users.verify_user(session, username, password)

    return await run_in_threadpool(verify)


async def active_user(ctx: AppContext, user_id: str) -> User | None:
    """The user behind a session, if it still exists and is active."""
    try:
        parsed = uuid.UUID(user_id)
    except ValueError:
        return None

    def read() -> User | None:
        with ctx.sessions() as session:
            user = users.get_user(session, parsed)
            return user if user is not None and user.is_active else None

    return await run_in_threadpool(retry_on_disconnect(read))
