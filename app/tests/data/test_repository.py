"""Repository behaviour against the real PostgreSQL: state changes, pages, users, API keys."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from morpheus.db import api_keys, comics, users
from morpheus.db.models import ApiKey, Comic, Page, User
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

NOVEL = "It was a dark and stormy night. " * 20


def new_comic(session: Session, **kwargs: object) -> Comic:
    return comics.create_comic(session, title="The Storm", source_text=NOVEL, **kwargs)


def running_comic(session: Session) -> Comic:
    return comics.start_comic(session, new_comic(session).id)


# --- comics -----------------------------------------------------------------------------


def test_create_comic_stores_a_queued_comic(db_session: Session) -> None:
    key = api_keys.create_api_key(db_session, "owner").api_key
    comic = comics.create_comic(
        db_session,
        title="  The Storm  ",
        source_text=NOVEL,
        options={"style": "noir"},
        api_key_id=key.id,
        client_addr="203.0.113.9",
    )
    assert isinstance(comic.id, uuid.UUID)
    db_session.expunge_all()
    stored = comics.get_comic(db_session, comic.id)
    assert stored is not None
    assert stored.title == "The Storm"
    assert stored.word_count == len(NOVEL.split())
    assert (stored.status, stored.stage, stored.progress, stored.attempts) == (
        "queued",
        "queued",
        0.0,
        0,
    )
    assert stored.options == {"style": "noir"}
    assert stored.timings == {}
    assert stored.api_key_id == key.id
    assert stored.client_addr == "203.0.113.9"
    assert stored.created_at.tzinfo is not None
    assert stored.started_at is None and stored.finished_at is None


def test_source_text_loads_only_when_asked(db_session: Session) -> None:
    comic_id = new_comic(db_session).id
    db_session.expunge_all()
    light = comics.get_comic(db_session, comic_id)
    assert light is not None
    assert "source_text" in inspect(light).unloaded
    db_session.expunge_all()
    full = comics.get_comic(db_session, comic_id, with_source=True)
    assert full is not None
    assert "source_text" not in inspect(full).unloaded
    assert full.source_text == NOVEL


@pytest.mark.parametrize(
    ("title", "source", "message"),
    [
        ("   ", NOVEL, "title must not be empty"),
        ("x" * 301, NOVEL, "at most 300"),
        ("Fine", " \n ", "source_text must not be empty"),
    ],
)
def test_create_comic_rejects_bad_input(
    db_session: Session, title: str, source: str, message: str
) -> None:
    before = comics.count_comics(db_session)
    with pytest.raises(ValueError, match=message):
        comics.create_comic(db_session, title=title, source_text=source)
    assert comics.count_comics(db_session) == before


def test_get_comic_with_unknown_or_malformed_id(db_session: Session) -> None:
    assert comics.get_comic(db_session, uuid.uuid4()) is None
    assert comics.get_comic(db_session, "not-a-uuid") is None
    with pytest.raises(comics.ComicNotFound):
        comics.start_comic(db_session, uuid.uuid4())
    with pytest.raises(comics.ComicNotFound):
        comics.cancel_comic(db_session, "not-a-uuid")


def test_list_comics_newest_first_with_status_filter_and_paging(db_session: Session) -> None:
    made = [new_comic(db_session) for _ in range(3)]
    comics.start_comic(db_session, made[1].id)
    newest = comics.list_comics(db_session, limit=500)
    ids = [comic.id for comic in newest]
    positions = [ids.index(comic.id) for comic in made]
    assert positions == sorted(positions, reverse=True)  # made[2] first
    running = comics.list_comics(db_session, status="running", limit=500)
    assert made[1].id in {c.id for c in running}
    assert all(c.status == "running" for c in running)
    page_two = comics.list_comics(db_session, limit=1, offset=1)
    assert [c.id for c in page_two] == [ids[1]]
    with pytest.raises(ValueError):
        comics.list_comics(db_session, limit=0)
    with pytest.raises(ValueError):
        comics.list_comics(db_session, status="sleeping")


def test_a_comic_runs_from_queued_to_completed(db_session: Session) -> None:
    comic = new_comic(db_session)
    started = comics.start_comic(db_session, comic.id)
    assert (started.status, started.attempts) == ("running", 1)
    assert started.started_at is not None
    for stage, progress in [("segment", 0.1), ("render", 0.5), ("compose", 0.8)]:
        current = comics.set_stage(db_session, comic.id, stage, progress)
        assert (current.stage, current.progress) == (stage, progress)
        comics.record_timing(db_session, comic.id, stage, progress * 10)
    done = comics.complete_comic(db_session, comic.id, page_count=4)
    assert (done.status, done.stage, done.progress, done.page_count) == (
        "completed",
        "done",
        1.0,
        4,
    )
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.timings == {"segment": 1.0, "render": 5.0, "compose": 8.0}


def test_redelivered_start_counts_another_attempt(db_session: Session) -> None:
    comic = running_comic(db_session)
    again = comics.start_comic(db_session, comic.id)
    assert (again.status, again.attempts) == ("running", 2)


def test_finished_transitions_repeat_as_no_ops(db_session: Session) -> None:
    comic = running_comic(db_session)
    first = comics.complete_comic(db_session, comic.id, page_count=2)
    second = comics.complete_comic(db_session, comic.id, page_count=2)
    assert second.status == "completed"
    assert second.finished_at == first.finished_at

    other = running_comic(db_session)
    comics.cancel_comic(db_session, other.id)
    assert comics.cancel_comic(db_session, other.id).status == "cancelled"


def test_cancelled_comic_is_not_started_completed_or_failed(db_session: Session) -> None:
    comic = running_comic(db_session)
    cancelled = comics.cancel_comic(db_session, comic.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(comics.InvalidTransition, match=r"cannot start .* it is cancelled"):
        comics.start_comic(db_session, comic.id)
    with pytest.raises(comics.InvalidTransition):
        comics.complete_comic(db_session, comic.id, page_count=1)
    with pytest.raises(comics.InvalidTransition):
        comics.set_stage(db_session, comic.id, "render", 0.5)
    # A worker's final failure after a cancel leaves the cancel in place.
    assert comics.fail_comic(db_session, comic.id, "late failure").status == "cancelled"
    assert comics.get_comic(db_session, comic.id).error is None  # type: ignore[union-attr]


def test_completed_comic_cannot_be_cancelled_failed_or_retried(db_session: Session) -> None:
    comic = running_comic(db_session)
    comics.complete_comic(db_session, comic.id, page_count=1)
    for change in (
        lambda: comics.cancel_comic(db_session, comic.id),
        lambda: comics.fail_comic(db_session, comic.id, "boom"),
        lambda: comics.reset_for_retry(db_session, comic.id),
        lambda: comics.start_comic(db_session, comic.id),
    ):
        with pytest.raises(comics.InvalidTransition):
            change()
    assert comics.get_comic(db_session, comic.id).status == "completed"  # type: ignore[union-attr]


def test_failed_comic_is_reset_for_retry(db_session: Session) -> None:
    comic = running_comic(db_session)
    comics.set_stage(db_session, comic.id, "render", 0.4)
    failed = comics.fail_comic(db_session, comic.id, "provider timed out")
    assert (failed.status, failed.error) == ("failed", "provider timed out")
    assert failed.finished_at is not None
    with pytest.raises(comics.InvalidTransition):
        comics.start_comic(db_session, comic.id)
    retried = comics.reset_for_retry(db_session, comic.id)
    assert (retried.status, retried.stage, retried.progress, retried.error) == (
        "queued",
        "queued",
        0.0,
        None,
    )
    assert retried.finished_at is None
    assert comics.reset_for_retry(db_session, comic.id).status == "queued"  # no-op
    assert comics.start_comic(db_session, comic.id).attempts == 2


def test_cancel_of_queued_comic_and_retry_after_cancel(db_session: Session) -> None:
    comic = new_comic(db_session)
    assert comics.cancel_comic(db_session, comic.id).status == "cancelled"
    assert comics.reset_for_retry(db_session, comic.id).status == "queued"


def test_racing_sessions_cannot_both_finish_a_comic(db_session: Session, database_url: str) -> None:
    """The transition is one conditional UPDATE: a stale second session loses cleanly."""
    from morpheus.db.session import make_engine, make_sessionmaker

    comic = running_comic(db_session)
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with make_sessionmaker(engine)() as other:
            stale = comics.get_comic(other, comic.id)
            assert stale is not None and stale.status == "running"
            comics.cancel_comic(db_session, comic.id)
            with pytest.raises(comics.InvalidTransition, match="it is cancelled"):
                comics.complete_comic(other, comic.id, page_count=3)
    finally:
        engine.dispose()
    final = comics.get_comic(db_session, comic.id)
    assert final is not None and final.status == "cancelled" and final.page_count is None


@pytest.mark.parametrize(
    ("stage", "progress"), [("drawing", 0.5), ("render", 1.5), ("render", -0.1)]
)
def test_set_stage_rejects_bad_values(db_session: Session, stage: str, progress: float) -> None:
    comic = running_comic(db_session)
    with pytest.raises(ValueError):
        comics.set_stage(db_session, comic.id, stage, progress)
    assert comics.get_comic(db_session, comic.id).stage == "queued"  # type: ignore[union-attr]


def test_record_timing_replaces_a_stage_and_keeps_the_others(db_session: Session) -> None:
    comic = running_comic(db_session)
    comics.record_timing(db_session, comic.id, "segment", 1.25)
    comics.record_timing(db_session, comic.id, "render", 3)
    again = comics.record_timing(db_session, comic.id, "render", 4.5)
    assert again.timings == {"segment": 1.25, "render": 4.5}
    with pytest.raises(ValueError):
        comics.record_timing(db_session, comic.id, "render", -1)
    with pytest.raises(ValueError):
        comics.record_timing(db_session, comic.id, "Robert'); DROP TABLE comics;--", 1)
    with pytest.raises(comics.ComicNotFound):
        comics.record_timing(db_session, uuid.uuid4(), "render", 1)


def test_fail_comic_keeps_a_bounded_error(db_session: Session) -> None:
    comic = running_comic(db_session)
    failed = comics.fail_comic(db_session, comic.id, "x" * 50_000)
    assert len(failed.error or "") == comics.MAX_ERROR_LENGTH


def finished_comic(session: Session, status: str) -> Comic:
    comic = running_comic(session)
    if status == "completed":
        return comics.complete_comic(session, comic.id, page_count=2)
    if status == "failed":
        return comics.fail_comic(session, comic.id, "provider timed out")
    return comics.cancel_comic(session, comic.id)


def comic_exists(session: Session, comic_id: uuid.UUID) -> bool:
    return session.scalar(select(Comic.id).where(Comic.id == comic_id)) is not None


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_delete_comic_removes_a_finished_comic_and_its_pages(
    db_session: Session, status: str
) -> None:
    comic = finished_comic(db_session, status)
    for number in (1, 2):
        comics.upsert_page(db_session, comic.id, number, f"p{number}", 10, 10)
    other = finished_comic(db_session, status)
    comics.upsert_page(db_session, other.id, 1, "p1", 10, 10)
    seen: list[uuid.UUID] = []

    def before_delete(comic_id: uuid.UUID) -> int:
        seen.append(comic_id)
        assert comic_exists(db_session, comic_id)  # the row is still there (and locked)
        return 7

    assert comics.delete_comic(db_session, str(comic.id), before_delete=before_delete) == 7
    assert seen == [comic.id]
    assert not comic_exists(db_session, comic.id)
    assert comics.get_comic(db_session, comic.id) is None
    assert comics.list_pages(db_session, comic.id) == []
    count = db_session.scalar(
        select(text("count(*)")).select_from(Page).where(Page.comic_id == comic.id)
    )
    assert count == 0
    # Nothing else went with it.
    assert [p.number for p in comics.list_pages(db_session, other.id)] == [1]
    assert comics.delete_comic(db_session, other.id) is None


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_comic_refuses_a_comic_still_at_work(db_session: Session, status: str) -> None:
    comic = new_comic(db_session) if status == "queued" else running_comic(db_session)
    comics.upsert_page(db_session, comic.id, 1, "p1", 10, 10)
    called: list[uuid.UUID] = []
    with pytest.raises(comics.InvalidTransition, match=f"cannot delete .* it is {status}"):
        comics.delete_comic(db_session, comic.id, before_delete=called.append)
    assert called == []
    assert comic_exists(db_session, comic.id)
    assert len(comics.list_pages(db_session, comic.id)) == 1
    # Cancelled, it may go.
    comics.cancel_comic(db_session, comic.id)
    comics.delete_comic(db_session, comic.id)
    assert not comic_exists(db_session, comic.id)


def test_delete_comic_keeps_everything_when_before_delete_fails(db_session: Session) -> None:
    comic = finished_comic(db_session, "completed")
    comics.upsert_page(db_session, comic.id, 1, "p1", 10, 10)

    def before_delete(comic_id: uuid.UUID) -> None:
        raise OSError("storage is read-only")

    with pytest.raises(OSError, match="read-only"):
        comics.delete_comic(db_session, comic.id, before_delete=before_delete)
    assert comic_exists(db_session, comic.id)
    assert len(comics.list_pages(db_session, comic.id)) == 1
    assert comics.delete_comic(db_session, comic.id, before_delete=lambda _: 1) == 1


def test_delete_comic_holds_the_row_until_it_is_gone(
    db_session: Session, database_url: str
) -> None:
    """A retry queued from elsewhere while the files are removed waits, then finds nothing."""
    from morpheus.db.session import make_engine, make_sessionmaker

    comic = finished_comic(db_session, "failed")
    engine = make_engine(database_url, pool_size=1, max_overflow=0, statement_timeout_ms=1000)
    outcome: list[str] = []
    try:
        with make_sessionmaker(engine)() as other:

            def before_delete(comic_id: uuid.UUID) -> None:
                try:
                    comics.reset_for_retry(other, comic_id)
                    outcome.append("retried")
                except OperationalError as exc:  # the lock outlasts the statement timeout
                    other.rollback()
                    outcome.append(type(exc.orig).__name__)

            comics.delete_comic(db_session, comic.id, before_delete=before_delete)
            assert outcome == ["QueryCanceled"]
            with pytest.raises(comics.ComicNotFound):
                comics.reset_for_retry(other, comic.id)
    finally:
        engine.dispose()


def test_delete_comic_with_unknown_or_malformed_id(db_session: Session) -> None:
    with pytest.raises(comics.ComicNotFound, match="does not exist"):
        comics.delete_comic(db_session, uuid.uuid4())
    with pytest.raises(comics.ComicNotFound, match="comic not-a-uuid does not exist"):
        comics.delete_comic(db_session, "not-a-uuid")
    assert comics.get_comic(db_session, new_comic(db_session).id) is not None


# --- pages ------------------------------------------------------------------------------


def test_upsert_page_is_idempotent(db_session: Session) -> None:
    comic = running_comic(db_session)
    first = comics.upsert_page(db_session, comic.id, 1, "comics/x/pages/0001.png", 800, 1200)
    for _ in range(3):
        again = comics.upsert_page(db_session, comic.id, 1, "comics/x/pages/0001.png", 800, 1200)
        assert again.id == first.id
    replaced = comics.upsert_page(db_session, comic.id, 1, "comics/x/pages/v2.png", 900, 1300)
    assert replaced.id == first.id
    assert (replaced.storage_key, replaced.width, replaced.height) == (
        "comics/x/pages/v2.png",
        900,
        1300,
    )
    count = db_session.scalar(
        select(text("count(*)")).select_from(Page).where(Page.comic_id == comic.id)
    )
    assert count == 1


def test_list_pages_in_order_and_cascade_delete(db_session: Session) -> None:
    comic = running_comic(db_session)
    for number in (3, 1, 2):
        comics.upsert_page(db_session, comic.id, number, f"p{number}", 10, 10)
    assert [p.number for p in comics.list_pages(db_session, comic.id)] == [1, 2, 3]
    assert comics.list_pages(db_session, uuid.uuid4()) == []
    db_session.execute(text("DELETE FROM comics WHERE id = :id"), {"id": comic.id})
    db_session.commit()
    assert comics.list_pages(db_session, comic.id) == []


def test_get_comic_with_pages_reads_both_in_one_query(db_session: Session) -> None:
    comic = running_comic(db_session)
    assert comics.get_comic_with_pages(db_session, comic.id) == (comic, [])
    for number in (2, 3, 1):
        comics.upsert_page(db_session, comic.id, number, f"p{number}", 10, 10)
    other = running_comic(db_session)
    comics.upsert_page(db_session, other.id, 1, "other", 10, 10)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = db_session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        found = comics.get_comic_with_pages(db_session, str(comic.id))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert found is not None
    read, pages = found
    assert read.id == comic.id
    assert [(p.number, p.storage_key) for p in pages] == [(1, "p1"), (2, "p2"), (3, "p3")]
    assert len(statements) == 1, statements
    assert comics.get_comic_with_pages(db_session, uuid.uuid4()) is None
    assert comics.get_comic_with_pages(db_session, "not-an-id") is None


def test_upsert_page_for_unknown_comic_or_bad_size(db_session: Session) -> None:
    with pytest.raises(comics.ComicNotFound):
        comics.upsert_page(db_session, uuid.uuid4(), 1, "k", 10, 10)
    comic = running_comic(db_session)
    with pytest.raises(ValueError):
        comics.upsert_page(db_session, comic.id, 1, "k", 0, 10)
    # The session is still usable after the refused writes.
    assert comics.upsert_page(db_session, comic.id, 1, "k", 10, 10).number == 1


# --- users ------------------------------------------------------------------------------


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_user_password_is_argon2_hashed_and_verified(db_session: Session) -> None:
    name = unique_name("editor")
    user = users.create_user(db_session, name, "correct horse battery")
    stored = db_session.scalars(select(User).where(User.id == user.id)).one()
    assert stored.password_hash.startswith("$argon2id$")
    assert "correct horse battery" not in stored.password_hash
    verified = users.verify_user(db_session, name, "correct horse battery")
    assert verified is not None and verified.id == user.id


@pytest.mark.parametrize(
    "attempt", ["wrong password", "correct horse batter", "", "CORRECT HORSE BATTERY"]
)
def test_wrong_password_is_refused(db_session: Session, attempt: str) -> None:
    name = unique_name("editor")
    users.create_user(db_session, name, "correct horse battery")
    assert users.verify_user(db_session, name, attempt) is None


def test_unknown_or_inactive_user_is_refused(db_session: Session) -> None:
    assert users.verify_user(db_session, unique_name("nobody"), "whatever123") is None
    name = unique_name("gone")
    user = users.create_user(db_session, name, "correct horse battery")
    user.is_active = False
    db_session.commit()
    assert users.verify_user(db_session, name, "correct horse battery") is None


def test_find_user_by_username(db_session: Session) -> None:
    name = unique_name("finder")
    user = users.create_user(db_session, name, "correct horse battery")
    found = users.find_user(db_session, f"  {name} ")
    assert found is not None and found.id == user.id
    user.is_active = False
    db_session.commit()
    assert users.find_user(db_session, name) is not None  # inactive users too
    assert users.find_user(db_session, unique_name("nobody")) is None


def test_duplicate_username_and_bad_input(db_session: Session) -> None:
    name = unique_name("dup")
    users.create_user(db_session, name, "correct horse battery")
    with pytest.raises(users.UsernameTaken):
        users.create_user(db_session, name, "another password")
    with pytest.raises(ValueError, match="at least 8"):
        users.create_user(db_session, unique_name("short"), "short")
    with pytest.raises(ValueError, match="username"):
        users.create_user(db_session, "has space", "correct horse battery")
    # The refused duplicate did not break the session.
    assert users.verify_user(db_session, name, "correct horse battery") is not None


# --- API keys ---------------------------------------------------------------------------


def test_api_key_is_stored_hashed_and_verified(db_session: Session) -> None:
    created = api_keys.create_api_key(db_session, "partner")
    assert created.key.startswith(f"mph_{created.api_key.prefix}_")
    row = db_session.scalars(select(ApiKey).where(ApiKey.id == created.api_key.id)).one()
    assert row.key_hash == hashlib.sha256(created.key.encode()).hexdigest()
    secret_part = created.key.split("_", 2)[2]
    assert secret_part not in (row.key_hash, row.prefix, row.name)
    assert row.last_used_at is None
    verified = api_keys.verify_api_key(db_session, created.key)
    assert verified is not None and verified.id == created.api_key.id
    assert verified.last_used_at is not None


def test_wrong_malformed_or_revoked_api_key_is_refused(db_session: Session) -> None:
    created = api_keys.create_api_key(db_session, "partner")
    tampered = created.key[:-1] + ("A" if created.key[-1] != "A" else "B")
    assert api_keys.verify_api_key(db_session, tampered) is None
    assert api_keys.verify_api_key(db_session, "") is None
    assert api_keys.verify_api_key(db_session, "Bearer nonsense") is None
    other_prefix = f"mph_{'0' * 12}_{created.key.split('_', 2)[2]}"
    assert api_keys.verify_api_key(db_session, other_prefix) is None
    api_keys.revoke_api_key(db_session, created.api_key.id)
    assert api_keys.verify_api_key(db_session, created.key) is None
    with pytest.raises(api_keys.ApiKeyNotFound):
        api_keys.revoke_api_key(db_session, uuid.uuid4())


def test_revoke_api_keys_named_revokes_every_active_key_of_that_name(
    db_session: Session,
) -> None:
    name = unique_name("deploy")
    first, second, earlier = (api_keys.create_api_key(db_session, name) for _ in range(3))
    other = api_keys.create_api_key(db_session, unique_name("other"))
    revoked_before = api_keys.revoke_api_key(db_session, earlier.api_key.id).revoked_at

    revoked = api_keys.revoke_api_keys_named(db_session, f" {name} ")
    assert [key.id for key in revoked] == [first.api_key.id, second.api_key.id]
    assert all(key.revoked_at is not None and not key.is_active for key in revoked)
    for created in (first, second, earlier):
        assert api_keys.verify_api_key(db_session, created.key) is None
    assert api_keys.verify_api_key(db_session, other.key) is not None
    db_session.expire_all()
    stored = db_session.get(ApiKey, earlier.api_key.id)
    assert stored is not None and stored.revoked_at == revoked_before

    assert api_keys.revoke_api_keys_named(db_session, name) == []
    assert api_keys.revoke_api_keys_named(db_session, unique_name("nobody")) == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_revoke_api_keys_named_refuses_a_bad_name(db_session: Session, name: str) -> None:
    with pytest.raises(ValueError, match="API key name must be 1-100 characters"):
        api_keys.revoke_api_keys_named(db_session, name)
