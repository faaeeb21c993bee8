"""Prometheus figures of the worker's jobs."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOB_STAGE_SECONDS = Histogram(
    "morpheus_job_stage_seconds",
    "Time a comic job spent in one pipeline stage.",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)

JOB_ATTEMPTS = Counter(
    "morpheus_job_attempts",
    "Comic job attempts by outcome (completed, cancelled, retry, failed, timeout, requeued).",
    ["outcome"],
)
