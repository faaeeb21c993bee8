"""Error reporting to Sentry when a DSN is configured (off otherwise), for the web service
and the worker alike; secrets are scrubbed from every event before it leaves."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration

from morpheus import __version__
from morpheus.logging import REDACTED, is_secret_key, redact_text
from morpheus.settings import Settings


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Remove secrets from an event before it leaves the process."""

    def clean(value: Any, depth: int = 0) -> Any:
        if depth > 8:
            return value
        if isinstance(value, dict):
            return {
                k: REDACTED if is_secret_key(k) else clean(v, depth + 1) for k, v in value.items()
            }
        if isinstance(value, list):
            return [clean(v, depth + 1) for v in value]
        if isinstance(value, str):
            return redact_text(value)
        return value

    return clean(event)  # type: ignore[no-any-return]


def init_sentry(settings: Settings) -> bool:
    """Start the Sentry client when ``sentry_dsn`` is set; return whether it is on."""
    raw = settings.sentry_dsn
    dsn = raw.get_secret_value() if isinstance(raw, SecretStr) else (raw or "")
    if not dsn.strip():
        return False
    sentry_sdk.init(
        dsn=dsn.strip(),
        environment=settings.environment,
        release=f"morpheus@{__version__}+{settings.release_id}",
        traces_sample_rate=0.0,
        # Their request extractors read the body before the route does, which would defeat
        # the streaming size limit (and leave the route nothing to read); the app wraps
        # itself in SentryAsgiMiddleware instead, which reports errors without the body.
        disabled_integrations=[StarletteIntegration, FastApiIntegration],
        before_send=scrub_event,  # type: ignore[arg-type]
        # A frame's variables may hold a novel's text or a client's address.
        include_local_variables=False,
        shutdown_timeout=2,
    )
    return True
