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
# What an attempt can end in: its comic completed or was found cancelled; it failed and
# will be retried (retry; timeout when it ran out of time); it failed for good (failed);
# the worker stopped and handed it back (requeued). Shown at 0 from the start, so that a
# rate over the first failure of a new worker sees it.
JOB_OUTCOMES = ("completed", "cancelled", "retry", "timeout", "failed", "requeued")
for _outcome in JOB_OUTCOMES:
    JOB_ATTEMPTS.labels(outcome=_outcome)

HEARTBEAT_FAILURES = Counter(
    "morpheus_worker_heartbeat_failures",
    "Heartbeats the worker could not write to Redis (three in a row drop it off the list).",
)

RECONCILER_REQUEUED = Counter(
    "morpheus_reconciler_requeued",
    "Comics the reconciler queued again, by their status in PostgreSQL and the action: "
    "enqueue (Redis held no job) or retry (Redis held a finished job).",
    ["status", "action"],
)

RECONCILER_FAILURES_RECORDED = Counter(
    "morpheus_reconciler_failures_recorded",
    "Running comics whose job had failed for good in Redis, recorded failed by the reconciler.",
)

RECONCILER_RUNS = Counter(
    "morpheus_reconciler_runs",
    "Reconciler passes by outcome: ok, locked (another process held the lock), error.",
    ["outcome"],
)
