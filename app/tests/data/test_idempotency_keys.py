"""Idempotency keys in PostgreSQL: one comic per key, also for requests racing each other."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from morpheus.db import comics, idempotency_keys
from morpheus.db.models import Comic, IdempotencyKey
from morpheus.db.session import make_engine, make_sessionmaker
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

NOVEL = "Mara climbed the stairs. The lamp was cold. Tom came in from the rain."
FINGERPRINT = "a" * 64


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=3, max_overflow=0)
    yield engine
    engine.dispose()


def once(
    session: Session, key: str, fingerprint: str = FINGERPRINT, title: str = "Once"
) -> idempotency_keys.CreatedOnce:
    return idempotency_keys.create_comic_once(
        session,
        scope="test",
        key=key,
        fingerprint=fingerprint,
        title=title,
        source_text=NOVEL,
    )


def titled(session: Session, title: str) -> int:
    return int(session.scalar(select(func.count()).where(Comic.title == title)) or 0)


def keys_of(session: Session, comic_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(IdempotencyKey)
    return int(session.scalar(query.where(IdempotencyKey.comic_id == comic_id)) or 0)


def test_a_key_makes_one_comic_and_another_body_conflicts(db_session: Session) -> None:
    key, title = str(uuid.uuid4()), f"Once {uuid.uuid4().hex[:6]}"
    first = once(db_session, key, title=title)
    again = once(db_session, key, title=title)
    assert first.created and not again.created
    assert again.comic.id == first.comic.id
    with pytest.raises(idempotency_keys.IdempotencyConflict) as conflict:
        once(db_session, key, fingerprint="b" * 64, title=title)
    assert conflict.value.comic_id == first.comic.id
    assert titled(db_session, title) == 1
    assert keys_of(db_session, first.comic.id) == 1


def test_a_request_racing_with_the_same_key_waits_and_gets_the_first_comic(
    engine: Engine,
) -> None:
    sessions = make_sessionmaker(engine)
    key, title = str(uuid.uuid4()), f"Second {uuid.uuid4().hex[:6]}"
    with sessions() as winner:
        # The first request has written its comic and key and not committed yet.
        comic = comics.create_comic(winner, title="First", source_text=NOVEL)
        winner.add(
            IdempotencyKey(scope="test", key=key, fingerprint=FINGERPRINT, comic_id=comic.id)
        )
        winner.flush()
        results: list[idempotency_keys.CreatedOnce] = []
        errors: list[BaseException] = []

        def second() -> None:
            try:
                with sessions() as session:
                    results.append(once(session, key, title=title))
            except BaseException as exc:  # reported below
                errors.append(exc)

        racer = threading.Thread(target=second)
        racer.start()
        racer.join(1.0)
        assert racer.is_alive(), "the second request did not wait for the first"
        winner.commit()
        racer.join(10)
    assert not errors, errors
    assert [(r.comic.id, r.created) for r in results] == [(comic.id, False)]
    with sessions() as session:
        assert titled(session, title) == 0  # the second request's comic was rolled back
        assert keys_of(session, comic.id) == 1


def test_a_released_key_makes_a_new_comic(db_session: Session) -> None:
    key = str(uuid.uuid4())
    first = once(db_session, key)
    assert idempotency_keys.release_idempotency_keys(db_session, first.comic.id) == 1
    second = once(db_session, key)
    assert second.created and second.comic.id != first.comic.id


def test_a_comic_deleted_as_the_previous_release_does_takes_its_key(
    db_session: Session,
) -> None:
    # The previous release knows nothing of idempotency keys and deletes comics with a
    # plain DELETE; the key goes with the comic, and the key is free again.
    key = str(uuid.uuid4())
    first = once(db_session, key)
    db_session.execute(text("DELETE FROM comics WHERE id = :id"), {"id": first.comic.id})
    db_session.commit()
    assert keys_of(db_session, first.comic.id) == 0
    assert once(db_session, key).created


@pytest.mark.parametrize("key", ["", "k" * 129, "two words", "\u00e9"])
def test_malformed_keys_are_refused(db_session: Session, key: str) -> None:
    with pytest.raises(ValueError, match="idempotency key must be 1-128 characters"):
        once(db_session, key)
