"""Prometheus metrics: HTTP request counts and latency, and the exposition.

The HTTP metrics live in the process-wide default registry, beside the pipeline,
provider, worker, rate-limit and hot standby metrics that other modules define there.
When Gunicorn runs several workers, ``PROMETHEUS_MULTIPROC_DIR`` is set and
:func:`render_metrics` aggregates the files all processes write (prometheus-client's
multiprocess mode), plus the queue's figures, which the process serving the scrape has
just read from Redis (:mod:`morpheus.queue.metrics`). Every metric is listed in ``docs/metrics.md``.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Imported for their metrics, so that they are registered (and exposed) in every process.
import morpheus.db.standby
import morpheus.providers.metrics
import morpheus.queue.metrics
import morpheus.services.request_limits
import morpheus.storage
import morpheus.worker.metrics  # noqa: F401
from morpheus.api.middleware import route_template, site_name
from morpheus.queue.metrics import QUEUE_COLLECTOR

HTTP_REQUESTS = Counter(
    "morpheus_http_requests_total",
    "HTTP requests answered, by site, method, route template and status code.",
    ["site", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "morpheus_http_request_duration_seconds",
    "Time to answer an HTTP request, by site, method and route template.",
    ["site", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# A client may send any token as the method: others are counted as "other", so that the
# label keeps a handful of values.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


class MetricsMiddleware:
    """Count every HTTP request and time it, labelled by its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            site, route = site_name(scope), route_template(scope)
            method = method_label(scope["method"])
            HTTP_REQUESTS.labels(site, method, route, str(status)).inc()
            HTTP_LATENCY.labels(site, method, route).observe(time.perf_counter() - started)


def base_registry() -> CollectorRegistry:
    """The registry to expose: multiprocess aggregation when configured, else the default."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        # Read by this process at scrape time, never written to the multiprocess files.
        registry.register(QUEUE_COLLECTOR)
        return registry
    return REGISTRY


def render_metrics() -> tuple[bytes, str]:
    """The exposition text (Prometheus format) and its content type."""
    return generate_latest(base_registry()), CONTENT_TYPE_LATEST
