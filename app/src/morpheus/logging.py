"""JSON logs through structlog, a per-request id, and secret redaction.

Every log line, ours and the standard library's (uvicorn, gunicorn, SQLAlchemy), goes
through the same processor chain and ends as one JSON object on stderr. The chain
always includes :func:`redact_secrets`, so a password, token or API key handed to a
logger by mistake is replaced by ``[REDACTED]`` before anything is written.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

# Keys whose values are never logged, whatever they hold (matched case-insensitively,
# anywhere in the key: "db_password", "X-API-Key", "refresh_token", "set-cookie").
_SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?|secret|token|authori[sz]ation|api[_-]?key|cookie|session|"
    r"credential|private[_-]?key|dsn|csrf",
    re.IGNORECASE,
)
# Values that look like one of our API keys ("mph_<prefix>_<secret>"), a bearer
# credential, or a URL carrying a password, wherever they appear in a string.
_API_KEY_RE = re.compile(r"\bmph_[0-9a-f]{12}_[A-Za-z0-9_\-]{8,}")
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@")
# What each of those three needs to match: most strings (paths, ids, times) have none of
# it, and one search tells so quicker than the three substitutions would.
_MAYBE_SECRET_RE = re.compile(r"mph_|://|(?i:bearer|basic)")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")

_MAX_DEPTH = 6


def redact_text(text: str) -> str:
    """Mask API keys, bearer credentials and URL passwords inside a string."""
    if _MAYBE_SECRET_RE.search(text) is None:
        return text
    text = _API_KEY_RE.sub(REDACTED, text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _URL_PASSWORD_RE.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)


def is_secret_key(key: object) -> bool:
    """True when a mapping key names something that must never be logged."""
    return isinstance(key, str) and _is_secret_name(key)


@functools.lru_cache(maxsize=1024)
def _is_secret_name(key: str) -> bool:
    # A log line's keys are mostly the same few names, asked about on every line.
    return _SECRET_KEY_RE.search(key) is not None


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if is_secret_key(k) else _redact(v, depth + 1)) for k, v in value.items()
        }
    if isinstance(value, tuple) and len(value) == 2 and is_secret_key(value[0]):
        # A (name, value) pair such as the header ("authorization", "Bearer ...").
        return (value[0], REDACTED)
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return _redact(value.decode("utf-8", "replace"), depth)
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop secret values from every field of a log line."""
    for key in list(event_dict):
        value = event_dict[key]
        if is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(value)
    return event_dict


def sane_request_id(candidate: str | None) -> str:
    """The incoming request id when it is short and plain, else a fresh one."""
    if candidate and _REQUEST_ID_RE.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        redact_secrets,
    ]


def _drop_duplicate_message(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """A record already formatted by another handler carries its text twice; keep one."""
    if event_dict.get("message") == event_dict.get("event"):
        event_dict.pop("message", None)
    event_dict.pop("color_message", None)  # uvicorn's terminal-coloured copy
    return event_dict


def configure_logging(level: str = "INFO", *, stream: Any = None) -> None:
    """Send structlog and standard-library logging to ``stream`` as JSON lines.

    Safe to call more than once (each call replaces the previous handlers).
    """
    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared, _drop_duplicate_message],
        # Both ways in have already redacted the line: the chain above a structlog line
        # (before any handler sees it), the pre-chain a standard library's record.
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("morpheus-json")

    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "morpheus-json"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())

    # Servers log through the root handler; their own access logs are replaced by ours.
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        server_logger = logging.getLogger(name)
        server_logger.handlers = []
        server_logger.propagate = True
    for name in ("uvicorn.access", "gunicorn.access"):
        access = logging.getLogger(name)
        access.handlers = []
        access.propagate = False
        access.disabled = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger bound to ``name``."""
    return structlog.stdlib.get_logger(name)


def bind_request(request_id: str, **fields: Any) -> Mapping[str, Any]:
    """Bind the request id (and more fields) to every log line of the current context."""
    return structlog.contextvars.bind_contextvars(request_id=request_id, **fields)


def current_context() -> MutableMapping[str, Any]:
    """The fields bound to the current context (for tests and error reports)."""
    return structlog.contextvars.get_contextvars()
