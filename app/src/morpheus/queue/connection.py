"""How the queue reaches Redis: connection URLs with timeouts, BullMQ options, key names."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from morpheus.settings import Settings

# BullMQ's key prefix; the default, so BullMQ dashboards find the queues without setup.
BULLMQ_PREFIX = "bull"
# The name every comic job carries (BullMQ job "name"; the id is the comic id).
COMIC_JOB_NAME = "comic"
# Bound on any one queue operation made by the API or a test (seconds).
CALL_TIMEOUT_SECONDS = 10.0
# Socket timeouts: commands from the API side answer fast; the worker's blocking
# connection waits up to 10 s in BZPOPMIN, so its read timeout must be longer.
CLIENT_SOCKET_TIMEOUT_SECONDS = 5.0
WORKER_SOCKET_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5.0


def redis_url_with_timeouts(url: str, socket_timeout: float) -> str:
    """``url`` with socket and connect timeouts added, unless the URL already sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("socket_timeout", str(socket_timeout))
    query.setdefault("socket_connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    return urlunsplit(parts._replace(query=urlencode(query)))


def queue_options(settings: Settings) -> dict[str, Any]:
    """Options for a ``bullmq.Queue`` used by producers and queries."""
    return {
        "connection": redis_url_with_timeouts(settings.redis_url, CLIENT_SOCKET_TIMEOUT_SECONDS),
        "prefix": BULLMQ_PREFIX,
    }


def job_options(settings: Settings, comic_id: str) -> dict[str, Any]:
    """Options of a comic job: id = comic id, attempts and exponential backoff from settings."""
    return {
        "jobId": comic_id,
        "attempts": settings.job_attempts,
        "backoff": {"type": "exponential", "delay": round(settings.job_backoff_seconds * 1000)},
        # Keep finished jobs for the dashboard and for de-duplication, but bounded.
        "removeOnComplete": {"age": 7 * 24 * 3600, "count": 10_000},
        "removeOnFail": {"age": 30 * 24 * 3600, "count": 10_000},
    }


def heartbeat_pattern(settings: Settings) -> str:
    """SCAN pattern matching the heartbeat keys of every worker of the queue."""
    return heartbeat_key(settings, "*")


def heartbeat_key(settings: Settings, worker_id: str) -> str:
    """The heartbeat key of one worker (a JSON document with a TTL)."""
    return f"morpheus:{settings.queue_name}:workers:{worker_id}"
