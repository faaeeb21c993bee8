"""Prometheus metrics of the panel providers' calls (registered once per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PROVIDER_SECONDS = Histogram(
    "morpheus_provider_request_seconds",
    "Latency of one panel provider call (an HTTP request, or a whole panel render).",
    ["provider", "operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
PROVIDER_ERRORS = Counter(
    "morpheus_provider_errors_total",
    "Panel provider calls that failed, by what went wrong.",
    ["provider", "operation", "outcome"],
)


def observe(provider: str, operation: str, outcome: str, seconds: float) -> None:
    PROVIDER_SECONDS.labels(provider, operation, outcome).observe(seconds)
    if outcome != "ok":
        PROVIDER_ERRORS.labels(provider, operation, outcome).inc()
