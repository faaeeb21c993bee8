"""Dashboard users and their argon2id password hashes, as plain functions taking a
``Session`` (each commits its own work)."""

from __future__ import annotations

import contextlib
import re
import secrets
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from morpheus.db.errors import RepositoryError
from morpheus.db.models import User

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,150}$")

_hasher = PasswordHasher()
# Verified against when a username does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UsernameTaken(RepositoryError):
    def __init__(self, username: str) -> None:
        super().__init__(f"username {username!r} is already taken")
        self.username = username


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be at most {MAX_PASSWORD_LENGTH} characters")


def create_user(session: Session, username: str, password: str) -> User:
    """A dashboard user with an argon2 password hash."""
    username = username.strip()
    if not _USERNAME_RE.match(username):
        raise ValueError("username must be 1-150 characters: letters, digits, _ . @ -")
    _check_password(password)
    user = User(id=uuid.uuid4(), username=username, password_hash=_hasher.hash(password))
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise UsernameTaken(username) from None
    return user


def get_user(session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def find_user(session: Session, username: str) -> User | None:
    """The user with this username (active or not), or None."""
    return session.scalars(select(User).where(User.username == username.strip())).one_or_none()


def verify_user(session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, or None."""
    user = find_user(session, username)
    if user is None or not user.is_active:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.commit()
    return user


def set_user_password(session: Session, username: str, password: str) -> User:
    _check_password(password)
    user = find_user(session, username)
    if user is None:
        raise LookupError(f"user {username!r} does not exist")
    user.password_hash = _hasher.hash(password)
    session.commit()
    return user
