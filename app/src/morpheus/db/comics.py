"""Comics and their pages, as plain functions taking a ``Session``.

Every function that writes commits its own work before returning, so callers need no
transaction handling; returned objects stay readable after the commit. State changes of
a comic are single conditional ``UPDATE ... WHERE status IN (...)`` statements, so two
processes racing on the same comic cannot both win. Repeating a finished transition is
a no-op (delivery of queue jobs is at least once); a transition that makes no sense
raises :class:`InvalidTransition`.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from morpheus.db.errors import RepositoryError
from morpheus.db.models import Comic, ComicStage, ComicStatus, Page

ComicId = uuid.UUID | str
T = TypeVar("T")

MAX_TITLE_LENGTH = 300
MAX_ERROR_LENGTH = 10_000
MAX_LIST_LIMIT = 500

# A comic in one of these states has no job working on it any more (it may be deleted).
FINISHED_STATUSES = (ComicStatus.COMPLETED, ComicStatus.FAILED, ComicStatus.CANCELLED)

_TIMING_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ComicNotFound(RepositoryError):
    def __init__(self, comic_id: object) -> None:
        super().__init__(f"comic {comic_id} does not exist")
        self.comic_id = comic_id


class InvalidTransition(RepositoryError):
    """The comic's current status does not allow the requested change."""

    def __init__(self, comic_id: uuid.UUID, status: str, action: str) -> None:
        super().__init__(f"cannot {action} comic {comic_id}: it is {status}")
        self.comic_id = comic_id
        self.status = status
        self.action = action


class Unfinished(NamedTuple):
    """A queued or running comic, as the reconciler sees it."""

    id: uuid.UUID
    status: str
    created_at: datetime
    # Seconds since the comic last changed (a submission, a retry, a step's progress).
    idle_seconds: float


def _parse_id(value: ComicId) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def require_id(value: ComicId) -> uuid.UUID:
    """``value`` as a UUID; :class:`ComicNotFound` when it cannot be a comic's id."""
    parsed = _parse_id(value)
    if parsed is None:
        raise ComicNotFound(value)
    return parsed


# --- comics -----------------------------------------------------------------------------


def create_comic(
    session: Session,
    *,
    title: str,
    source_text: str,
    options: Mapping[str, Any] | None = None,
    word_count: int | None = None,
    api_key_id: uuid.UUID | None = None,
    client_addr: str | None = None,
) -> Comic:
    """Store a new comic in status ``queued``."""
    comic = new_comic(
        title=title,
        source_text=source_text,
        options=options,
        word_count=word_count,
        api_key_id=api_key_id,
        client_addr=client_addr,
    )
    session.add(comic)
    session.commit()
    return comic


def new_comic(
    *,
    title: str,
    source_text: str,
    options: Mapping[str, Any] | None = None,
    word_count: int | None = None,
    api_key_id: uuid.UUID | None = None,
    client_addr: str | None = None,
) -> Comic:
    """A new comic in status ``queued``, checked but not added to a session."""
    title = title.strip()
    if not title:
        raise ValueError("title must not be empty")
    if len(title) > MAX_TITLE_LENGTH:
        raise ValueError(f"title must be at most {MAX_TITLE_LENGTH} characters")
    if not source_text.strip():
        raise ValueError("source_text must not be empty")
    comic = Comic(
        id=uuid.uuid4(),
        title=title,
        source_text=source_text,
        options=dict(options or {}),
        word_count=len(source_text.split()) if word_count is None else word_count,
        status=ComicStatus.QUEUED.value,
        stage=ComicStage.QUEUED.value,
        progress=0.0,
        attempts=0,
        timings={},
        api_key_id=api_key_id,
        client_addr=client_addr,
    )
    return comic


def get_comic(session: Session, comic_id: ComicId, *, with_source: bool = False) -> Comic | None:
    """The comic, or None. ``with_source`` also loads the (large) novel text."""
    parsed = _parse_id(comic_id)
    if parsed is None:
        return None
    options = [undefer(Comic.source_text)] if with_source else []
    return session.get(Comic, parsed, options=options, populate_existing=True)


def get_comic_with_pages(session: Session, comic_id: ComicId) -> tuple[Comic, list[Page]] | None:
    """The comic and its pages in page order, or None, in one query: a status poll's
    whole read (the comic's row comes once per page, without the novel's text)."""
    parsed = _parse_id(comic_id)
    if parsed is None:
        return None
    query = (
        select(Comic, Page)
        .outerjoin(Page, Page.comic_id == Comic.id)
        .where(Comic.id == parsed)
        .order_by(Page.number)
        .execution_options(populate_existing=True)
    )
    rows = session.execute(query).all()
    if not rows:
        return None
    return rows[0][0], [page for _, page in rows if page is not None]


def list_comics(
    session: Session,
    *,
    limit: int = 50,
    offset: int = 0,
    status: str | None = None,
) -> list[Comic]:
    """Newest first."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    if offset < 0:
        raise ValueError("offset must not be negative")
    query = select(Comic)
    if status is not None:
        query = query.where(Comic.status == ComicStatus(status).value)
    query = query.order_by(Comic.created_at.desc(), Comic.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def count_comics(session: Session, *, status: str | None = None) -> int:
    query = select(func.count()).select_from(Comic)
    if status is not None:
        query = query.where(Comic.status == ComicStatus(status).value)
    return int(session.scalar(query) or 0)


def list_idle_unfinished(
    session: Session,
    *,
    queued_idle_seconds: float,
    running_idle_seconds: float,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[Unfinished]:
    """Comics that must still run and have not changed for a while, oldest first.

    Queued comics unchanged for ``queued_idle_seconds`` and running comics whose progress
    has not moved for ``running_idle_seconds``, by the database's clock. ``after`` is the
    (created_at, id) of the last comic of the previous page.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    now = func.now()
    idle = func.extract("epoch", now - Comic.updated_at)
    query = select(Comic.id, Comic.status, Comic.created_at, idle).where(
        or_(
            (Comic.status == ComicStatus.QUEUED.value)
            & (Comic.updated_at < now - timedelta(seconds=queued_idle_seconds)),
            (Comic.status == ComicStatus.RUNNING.value)
            & (Comic.updated_at < now - timedelta(seconds=running_idle_seconds)),
        )
    )
    if after is not None:
        query = query.where(tuple_(Comic.created_at, Comic.id) > tuple_(*after))
    query = query.order_by(Comic.created_at, Comic.id).limit(limit)
    return [
        Unfinished(row.id, row.status, row.created_at, float(row[3]))
        for row in session.execute(query)
    ]


def _transition(
    session: Session,
    comic_id: ComicId,
    *,
    action: str,
    allowed_from: Iterable[ComicStatus],
    noop_from: Iterable[ComicStatus] = (),
    values: Mapping[str, Any],
) -> Comic:
    parsed = require_id(comic_id)
    allowed = [status.value for status in allowed_from]
    statement = (
        update(Comic)
        .where(Comic.id == parsed, Comic.status.in_(allowed))
        .values(**values, updated_at=func.now())
        .returning(Comic.id)
    )
    changed = session.execute(statement).scalar_one_or_none()
    session.commit()
    comic = session.get(Comic, parsed, populate_existing=True)
    if comic is None:
        raise ComicNotFound(parsed)
    if changed is None and comic.status not in {status.value for status in noop_from}:
        raise InvalidTransition(parsed, comic.status, action)
    return comic


def start_comic(session: Session, comic_id: ComicId) -> Comic:
    """Mark the comic running and count the attempt (also on a redelivered job)."""
    return _transition(
        session,
        comic_id,
        action="start",
        allowed_from=(ComicStatus.QUEUED, ComicStatus.RUNNING),
        values={
            "status": ComicStatus.RUNNING.value,
            "attempts": Comic.attempts + 1,
            "started_at": func.now(),
            "finished_at": None,
            "error": None,
        },
    )


def set_stage(session: Session, comic_id: ComicId, stage: str, progress: float) -> Comic:
    """Record the stage a running comic is in and its overall progress (0..1)."""
    stage_value = ComicStage(stage).value
    if not (isinstance(progress, int | float) and math.isfinite(progress) and 0 <= progress <= 1):
        raise ValueError("progress must be a number between 0 and 1")
    return _transition(
        session,
        comic_id,
        action=f"set stage {stage_value} of",
        allowed_from=(ComicStatus.RUNNING,),
        values={"stage": stage_value, "progress": float(progress)},
    )


def record_timing(session: Session, comic_id: ComicId, stage: str, seconds: float) -> Comic:
    """Store how long a stage took (replacing an earlier value for the same stage)."""
    if not _TIMING_NAME_RE.match(stage):
        raise ValueError("stage name must be a short lowercase identifier")
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
        raise ValueError("seconds must be a non-negative number")
    parsed = require_id(comic_id)
    statement = (
        update(Comic)
        .where(Comic.id == parsed)
        .values(
            timings=Comic.timings.op("||")(func.jsonb_build_object(stage, float(seconds))),
            updated_at=func.now(),
        )
        .returning(Comic.id)
    )
    changed = session.execute(statement).scalar_one_or_none()
    session.commit()
    if changed is None:
        raise ComicNotFound(parsed)
    comic = session.get(Comic, parsed, populate_existing=True)
    assert comic is not None
    return comic


def complete_comic(session: Session, comic_id: ComicId, page_count: int) -> Comic:
    """Mark a running comic completed; completing it again changes nothing."""
    if page_count < 0:
        raise ValueError("page_count must not be negative")
    return _transition(
        session,
        comic_id,
        action="complete",
        allowed_from=(ComicStatus.RUNNING,),
        noop_from=(ComicStatus.COMPLETED,),
        values={
            "status": ComicStatus.COMPLETED.value,
            "stage": ComicStage.DONE.value,
            "progress": 1.0,
            "page_count": page_count,
            "finished_at": func.now(),
            "error": None,
        },
    )


def fail_comic(session: Session, comic_id: ComicId, error: str) -> Comic:
    """Record a final failure. A cancelled comic stays cancelled."""
    message = (error.strip() or "unknown error")[:MAX_ERROR_LENGTH]
    return _transition(
        session,
        comic_id,
        action="fail",
        allowed_from=(ComicStatus.QUEUED, ComicStatus.RUNNING, ComicStatus.FAILED),
        noop_from=(ComicStatus.CANCELLED,),
        values={
            "status": ComicStatus.FAILED.value,
            "error": message,
            "finished_at": func.now(),
        },
    )


def cancel_comic(session: Session, comic_id: ComicId) -> Comic:
    """Cancel a queued or running comic; the worker stops between steps."""
    return _transition(
        session,
        comic_id,
        action="cancel",
        allowed_from=(ComicStatus.QUEUED, ComicStatus.RUNNING),
        noop_from=(ComicStatus.CANCELLED,),
        values={"status": ComicStatus.CANCELLED.value, "finished_at": func.now()},
    )


def reset_for_retry(session: Session, comic_id: ComicId) -> Comic:
    """Put a failed or cancelled comic back to ``queued`` (pages already made are kept)."""
    return _transition(
        session,
        comic_id,
        action="retry",
        allowed_from=(ComicStatus.FAILED, ComicStatus.CANCELLED),
        noop_from=(ComicStatus.QUEUED,),
        values={
            "status": ComicStatus.QUEUED.value,
            "stage": ComicStage.QUEUED.value,
            "progress": 0.0,
            "error": None,
            "page_count": None,
            "started_at": None,
            "finished_at": None,
        },
    )


def delete_comic(
    session: Session,
    comic_id: ComicId,
    *,
    before_delete: Callable[[uuid.UUID], T] | None = None,
) -> T | None:
    """Delete a finished comic and its pages; return what ``before_delete`` returned.

    ``before_delete(comic_id)`` (removing the comic's files, say) runs while the comic's
    row is locked, so no retry can queue it meanwhile; if it raises, nothing is deleted.
    A queued or running comic raises :class:`InvalidTransition`: cancel it first.
    """
    parsed = require_id(comic_id)
    try:
        comic = session.scalars(
            select(Comic)
            .where(Comic.id == parsed)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one_or_none()
        if comic is None:
            raise ComicNotFound(parsed)
        if comic.status not in {status.value for status in FINISHED_STATUSES}:
            raise InvalidTransition(parsed, comic.status, "delete")
        result = before_delete(parsed) if before_delete is not None else None
        session.delete(comic)  # its pages go with it: ON DELETE CASCADE
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result


# --- pages ------------------------------------------------------------------------------


def upsert_page(
    session: Session,
    comic_id: ComicId,
    number: int,
    storage_key: str,
    width: int,
    height: int,
) -> Page:
    """Insert or replace page ``number`` of a comic: running it twice leaves one row."""
    parsed = require_id(comic_id)
    if number < 0:
        raise ValueError("page number must not be negative")
    if width <= 0 or height <= 0:
        raise ValueError("page width and height must be positive")
    statement = insert(Page).values(
        comic_id=parsed, number=number, storage_key=storage_key, width=width, height=height
    )
    statement = statement.on_conflict_do_update(
        constraint="uq_pages_comic_id_number",
        set_={
            "storage_key": statement.excluded.storage_key,
            "width": statement.excluded.width,
            "height": statement.excluded.height,
        },
    ).returning(Page.id)
    try:
        page_id = session.execute(statement).scalar_one()
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if "fk_pages_comic_id_comics" in str(exc.orig):
            raise ComicNotFound(parsed) from None
        raise
    page = session.get(Page, page_id, populate_existing=True)
    assert page is not None
    return page


def list_pages(session: Session, comic_id: ComicId) -> list[Page]:
    parsed = _parse_id(comic_id)
    if parsed is None:
        return []
    query = select(Page).where(Page.comic_id == parsed).order_by(Page.number)
    return list(session.scalars(query))
