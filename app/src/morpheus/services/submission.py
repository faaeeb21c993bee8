"""Submitting a novel: check it, store its comic and queue the comic's job, once per
idempotency key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from morpheus.db import comics, idempotency_keys
from morpheus.db.models import Comic
from morpheus.db.session import retry_on_disconnect
from morpheus.logging import get_logger
from morpheus.pipeline.ingest import NovelRejected
from morpheus.queue import client as queue_client
from morpheus.services import extraction
from morpheus.services.context import AppContext
from morpheus.services.errors import ENQUEUE_FAILED_MESSAGE, KeyReused, Rejected, Unavailable

# Its lines keep the logger name they had when this lived in the API package, so that
# log queries selecting on it still find them.
log = get_logger("morpheus.api.services")

# A submission waits this long for the queue. Should the job still arrive after the comic
# was marked failed, the worker skips it (a failed comic cannot be started).
ENQUEUE_TIMEOUT_SECONDS = 5.0


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
