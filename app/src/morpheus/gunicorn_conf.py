"""Gunicorn configuration for the web service.

Run with ``gunicorn -c python:morpheus.gunicorn_conf`` (the app, ``morpheus.asgi:app``,
is named here). Settings are validated when this file is read, so a missing or invalid
``MORPHEUS_*`` variable stops the master before any worker starts.

Environment (besides the ``MORPHEUS_*`` settings):
- ``MORPHEUS_BIND``: address to listen on (default ``0.0.0.0:8000``).
- ``MORPHEUS_WEB_CONCURRENCY`` or ``WEB_CONCURRENCY``: worker processes (default
  ``2 * cores + 1``, at most 8).
- ``PROMETHEUS_MULTIPROC_DIR``: where workers write metrics; created and emptied at
  start. When unset and more than one worker runs, a private directory is made.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn import glogging

from morpheus.logging import configure_logging
from morpheus.settings import SettingsError, get_settings

try:
    _settings = get_settings()
except SettingsError as exc:
    for line in exc.lines:
        print(f"morpheus: invalid setting: {line}", file=sys.stderr)
    raise SystemExit(2) from None


def _workers_from_env() -> int:
    configured = os.environ.get("MORPHEUS_WEB_CONCURRENCY") or os.environ.get("WEB_CONCURRENCY")
    if configured:
        count = int(configured)
        if count < 1:
            raise SystemExit("morpheus: MORPHEUS_WEB_CONCURRENCY must be at least 1")
        return count
    return min(8, 2 * (os.cpu_count() or 1) + 1)


wsgi_app = "morpheus.asgi:app"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [os.environ.get("MORPHEUS_BIND", "0.0.0.0:8000")]
workers = _workers_from_env()
# In-flight requests get this long after SIGTERM; then the workers are killed.
graceful_timeout = int(_settings.shutdown_grace_seconds)
timeout = 60
keepalive = 5
# X-Forwarded-* are honoured only from these peers (the same list the app uses).
# An empty list trusts no peer (the app's own proxy-headers middleware agrees).
forwarded_allow_ips = ",".join(_settings.trusted_proxies)
# No plain-text access log: the app writes one JSON line per request.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
proc_name = "morpheus-web"
# Gunicorn's control socket lives at one fixed path per user: unused here, and it would
# clash between several servers on one machine.
control_socket_disable = True

if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="morpheus-metrics-")


class JsonLogger(glogging.Logger):
    """Gunicorn's own messages as JSON lines, through the same redacting chain as the app."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # gunicorn.error then propagates to the root's JSON handler; gunicorn.access is off.
        configure_logging(_settings.log_level)


logger_class = JsonLogger


def on_starting(server: Any) -> None:
    """Start with an empty metrics directory (stale files would skew the counters)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a worker that has gone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
