"""The errors a use case raises for people: each with the HTTP status the sites answer
with and a message to show."""

from __future__ import annotations

from collections.abc import Mapping

ENQUEUE_FAILED_MESSAGE = "The comic could not be queued; please submit it again."
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
