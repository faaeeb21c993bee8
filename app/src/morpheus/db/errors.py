"""The base of the errors the persistence modules raise on purpose."""

from __future__ import annotations


class RepositoryError(Exception):
    """Base of the errors the persistence modules (comics, users, API keys, idempotency
    keys) raise on purpose."""
