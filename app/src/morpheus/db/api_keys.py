"""API keys of programmatic clients, as plain functions taking a ``Session`` (each
commits its own work). Only a key's SHA-256 is stored; the plaintext is shown once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from morpheus.db.errors import RepositoryError
from morpheus.db.models import ApiKey

MAX_API_KEY_NAME_LENGTH = 100
API_KEY_SCHEME = "mph"
LAST_USED_RESOLUTION = timedelta(seconds=60)

_API_KEY_RE = re.compile(rf"^{API_KEY_SCHEME}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{32,128}})$")


class ApiKeyNotFound(RepositoryError):
    def __init__(self, api_key_id: object) -> None:
        super().__init__(f"API key {api_key_id} does not exist")
        self.api_key_id = api_key_id


class CreatedApiKey(NamedTuple):
    """A new API key: the stored record and the plaintext key, which is shown only once."""

    api_key: ApiKey
    key: str


def _now() -> datetime:
    return datetime.now(UTC)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _api_key_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_API_KEY_NAME_LENGTH:
        raise ValueError(f"API key name must be 1-{MAX_API_KEY_NAME_LENGTH} characters")
    return name


def create_api_key(session: Session, name: str) -> CreatedApiKey:
    """A new API key. Only its SHA-256 is stored; the plaintext is returned this once."""
    name = _api_key_name(name)
    prefix = secrets.token_hex(6)
    key = f"{API_KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(id=uuid.uuid4(), name=name, prefix=prefix, key_hash=hash_api_key(key))
    session.add(record)
    session.commit()
    return CreatedApiKey(api_key=record, key=key)


def verify_api_key(session: Session, key: str) -> ApiKey | None:
    """The active API key matching this plaintext key, or None. Records when it was used."""
    match = _API_KEY_RE.match(key.strip())
    if match is None:
        return None
    record = session.scalars(select(ApiKey).where(ApiKey.prefix == match.group(1))).one_or_none()
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.key_hash, hash_api_key(key.strip())):
        return None
    now = _now()
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
        record.last_used_at = now
        session.commit()
    return record


def revoke_api_key(session: Session, api_key_id: uuid.UUID) -> ApiKey:
    record = session.get(ApiKey, api_key_id)
    if record is None:
        raise ApiKeyNotFound(api_key_id)
    if record.revoked_at is None:
        record.revoked_at = _now()
        session.commit()
    return record


def revoke_api_keys_named(session: Session, name: str) -> list[ApiKey]:
    """Revoke every active API key called ``name``; return those revoked (maybe none).

    Keys revoked earlier keep the time they were revoked.
    """
    name = _api_key_name(name)
    statement = (
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiKey.id)
    )
    revoked = list(session.scalars(statement))
    session.commit()
    if not revoked:
        return []
    query = select(ApiKey).where(ApiKey.id.in_(revoked)).order_by(ApiKey.created_at)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))
