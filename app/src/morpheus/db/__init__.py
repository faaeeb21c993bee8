"""Persistence: models, engines/sessions, one module of functions per aggregate (comics
and their pages, idempotency keys, users, API keys) and schema migrations."""

from morpheus.db.models import (
    ApiKey,
    Base,
    Comic,
    ComicStage,
    ComicStatus,
    IdempotencyKey,
    Page,
    User,
)
from morpheus.db.session import (
    dispose_engines,
    get_engine,
    get_sessionmaker,
    make_engine,
    make_sessionmaker,
    session_scope,
)

__all__ = [
    "ApiKey",
    "Base",
    "Comic",
    "ComicStage",
    "ComicStatus",
    "IdempotencyKey",
    "Page",
    "User",
    "dispose_engines",
    "get_engine",
    "get_sessionmaker",
    "make_engine",
    "make_sessionmaker",
    "session_scope",
]
