"""Idempotency keys: a submission repeated under the same key makes one comic.

A key belongs to a scope (an API key's own, or the storefront's) and lives as long as
its comic (``ON DELETE CASCADE``). Functions take a ``Session`` and commit their own
work, as those of :mod:`morpheus.db.comics` do.
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from morpheus.db.comics import ComicId, new_comic, require_id
from morpheus.db.errors import RepositoryError
from morpheus.db.models import Comic, IdempotencyKey

# An Idempotency-Key: up to 128 characters of letters, digits and - _ . ~ : + / =
# (a UUID, a base64 or base64url token, a ULID, ...).
MAX_IDEMPOTENCY_KEY_LENGTH = 128
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9\-_.~:+/=]{1,128}$")


class IdempotencyConflict(RepositoryError):
    """The idempotency key was used before, for another submission."""

    def __init__(self, key: str, comic_id: uuid.UUID) -> None:
        super().__init__(f"idempotency key {key!r} was used for another submission")
        self.key = key
        self.comic_id = comic_id


class CreatedOnce(NamedTuple):
    """What :func:`create_comic_once` did: ``created`` is False when the key's earlier
    comic is returned and nothing new was stored."""

    comic: Comic
    created: bool


def _check_idempotency_key(scope: str, key: str) -> None:
    if not scope or len(scope) > 64:
        raise ValueError("idempotency scope must be 1-64 characters")
    if not IDEMPOTENCY_KEY_RE.match(key):
        raise ValueError(
            f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} characters: "
            "letters, digits, - _ . ~ : + / ="
        )


def find_idempotent_comic(
    session: Session, *, scope: str, key: str, fingerprint: str
) -> Comic | None:
    """The comic made earlier under ``key`` in ``scope``, or None when the key is unused.

    Raises :class:`IdempotencyConflict` when that comic was made from another submission
    (another ``fingerprint``).
    """
    _check_idempotency_key(scope, key)
    record = session.get(IdempotencyKey, (scope, key), populate_existing=True)
    if record is None:
        return None
    if not hmac.compare_digest(record.fingerprint, fingerprint):
        raise IdempotencyConflict(key, record.comic_id)
    comic = session.get(Comic, record.comic_id, populate_existing=True)
    if comic is None:  # deleted since (the key goes with it): as if unused
        return None
    return comic


def create_comic_once(
    session: Session,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    title: str,
    source_text: str,
    options: Mapping[str, Any] | None = None,
    word_count: int | None = None,
    api_key_id: uuid.UUID | None = None,
    client_addr: str | None = None,
) -> CreatedOnce:
    """Store a new comic under an idempotency key, unless the key already has one.

    The comic and its key are written in one transaction; the key's primary key makes a
    concurrent request with the same key wait for this one and then find its comic, so
    one key never makes two comics. Another submission under a used key raises
    :class:`IdempotencyConflict`.
    """
    fields: dict[str, Any] = {
        "title": title,
        "source_text": source_text,
        "options": options,
        "word_count": word_count,
        "api_key_id": api_key_id,
        "client_addr": client_addr,
    }
    for _ in range(3):
        existing = find_idempotent_comic(session, scope=scope, key=key, fingerprint=fingerprint)
        if existing is not None:
            return CreatedOnce(existing, created=False)
        comic = new_comic(**fields)
        session.add(comic)
        try:
            session.flush()
            claim = (
                insert(IdempotencyKey)
                .values(scope=scope, key=key, fingerprint=fingerprint, comic_id=comic.id)
                .on_conflict_do_nothing(constraint="pk_idempotency_keys")
                .returning(IdempotencyKey.key)
            )
            claimed = session.execute(claim).scalar_one_or_none()
            if claimed is not None:
                session.commit()
                return CreatedOnce(comic, created=True)
            session.rollback()  # another request took the key first: its comic counts
        except BaseException:
            session.rollback()
            raise
    raise RepositoryError(f"idempotency key {key!r} keeps changing hands; try again")


def release_idempotency_keys(session: Session, comic_id: ComicId) -> int:
    """Forget the idempotency keys of a comic (a submission that could not be queued), so
    that the client's retry with the same key makes a new comic. Returns how many."""
    parsed = require_id(comic_id)
    statement = (
        delete(IdempotencyKey)
        .where(IdempotencyKey.comic_id == parsed)
        .returning(IdempotencyKey.key)
    )
    released = len(session.execute(statement).all())
    session.commit()
    return released
