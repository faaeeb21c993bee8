"""The worker process: a BullMQ worker with timeouts, a SIGTERM drain, retries and metrics.

What BullMQ's Python port does by itself: fetch jobs, keep their locks alive, put back the
jobs of dead workers (stalled check), retry failed attempts with exponential backoff. What
this runtime adds:

- each attempt runs under ``asyncio.timeout(job_timeout_seconds)``; on expiry the attempt
  is stopped, and once its threaded steps have returned (:mod:`morpheus.worker.threads`)
  it fails with :class:`JobTimeoutError` and BullMQ's retry/backoff takes over;
- on the last attempt (or a permanent error) the failure is recorded in PostgreSQL through
  the job handler before BullMQ moves the job to ``failed``;
- SIGTERM/SIGINT: stop taking jobs, let in-flight jobs finish for ``shutdown_grace_seconds``
  while renewing their locks (BullMQ stops renewing them once its loop is closing);
  past that (or on a second signal) stop them and, once their steps have returned, move
  them back to ``wait`` (:mod:`morpheus.worker.requeue`), then exit 0. A step still
  running :data:`STEP_STOP_SECONDS` later keeps its job: the process exits without it
  (its thread is a daemon), and BullMQ's stalled check hands the job on once the lock
  lapses, so a job never runs in two places at once;
- a heartbeat key per worker, queue gauges refreshed as it beats, and a ``/metrics`` port;
- the reconciler's periodic pass (:mod:`morpheus.worker.reconciler`), which queues again
  the comics PostgreSQL says must run and Redis has no job for.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from bullmq import Job, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError
from prometheus_client import start_http_server

from morpheus.logging import configure_logging
from morpheus.observability import init_sentry
from morpheus.queue.connection import (
    BULLMQ_PREFIX,
    WORKER_SOCKET_TIMEOUT_SECONDS,
    redis_url_with_timeouts,
)
from morpheus.queue.metrics import refresh_queue_gauges
from morpheus.settings import Settings
from morpheus.worker import reconciler
from morpheus.worker.comic_job import ComicJob
from morpheus.worker.heartbeat import Heartbeat
from morpheus.worker.metrics import JOB_ATTEMPTS
from morpheus.worker.requeue import RequeueError, move_active_to_wait
from morpheus.worker.threads import AttemptThreads

log = structlog.stdlib.get_logger("morpheus.worker")

# Pause of BullMQ's fetch loop after a Redis connection error (its default is 15 s).
RUN_RETRY_DELAY_MS = 1000
# How long the steps of a job stopped at shutdown get to return before the worker exits
# without them (they check their stop flag at every panel and page).
STEP_STOP_SECONDS = 0.5
# While a timed-out attempt's steps finish, how often to say that the job waits for them.
STEP_WAIT_WARNING_SECONDS = 10.0


class JobTimeoutError(Exception):
    """An attempt ran longer than ``job_timeout_seconds``."""


class JobHandler(Protocol):
    """What the runtime runs: one attempt of a job, and the record of its final failure."""

    async def run(self, comic_id: str) -> str:
        """Run one attempt; return a short outcome word. Raise UnrecoverableError to stop."""
        ...

    async def fail(self, comic_id: str, error: str) -> None:
        """Record that the job failed for good."""
        ...


def worker_options(settings: Settings, name: str) -> dict[str, Any]:
    """BullMQ worker options from settings."""
    return {
        "connection": redis_url_with_timeouts(settings.redis_url, WORKER_SOCKET_TIMEOUT_SECONDS),
        "prefix": BULLMQ_PREFIX,
        "name": name,
        "autorun": False,
        "concurrency": settings.worker_concurrency,
        "lockDuration": round(settings.worker_lock_seconds * 1000),
        "stalledInterval": round(settings.worker_stalled_interval_seconds * 1000),
        "maxStalledCount": settings.worker_max_stalled_count,
        "runRetryDelay": RUN_RETRY_DELAY_MS,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat()


class WorkerRuntime:
    """One BullMQ worker of the comic queue and everything around it."""

    def __init__(self, settings: Settings, handler: JobHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = _now()
        self.worker: Worker | None = None
        self.draining = False
        self.processed = 0
        self.failed = 0
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._tokens: dict[str, str] = {}  # the lock token of each job in hand
        self._requeue: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._log = log.bind(queue=settings.queue_name, pid=self.pid)

    # --- signals ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: drain. A second call: stop waiting for in-flight jobs."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)

    # --- the heartbeat document ---------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        assert self.worker is not None
        return {
            "id": self.worker.id,
            "name": self.worker.workerName,
            "hostname": self.hostname,
            "pid": self.pid,
            "queue": self.settings.queue_name,
            "concurrency": self.settings.worker_concurrency,
            "active": sorted(self._inflight),
            "processed": self.processed,
            "failed": self.failed,
            "draining": self.draining,
            "release_id": self.settings.release_id,
            "started_at": self.started_at,
            "seen_at": _now(),
        }

    # --- one job ------------------------------------------------------------------------------
    async def _attempt(self, comic_id: str, steps: AttemptThreads) -> str:
        steps.bind()
        timeout = self.settings.job_timeout_seconds
        try:
            async with asyncio.timeout(timeout) as deadline:
                return await self.handler.run(comic_id)
        except Exception as exc:
            # The next attempt may start as soon as this one fails: its steps end first.
            timed_out = isinstance(exc, TimeoutError) and deadline.expired()
            steps.stop("the job timed out" if timed_out else "the attempt failed")
            await self._wait_for_steps(steps, comic_id)
            if timed_out:
                raise JobTimeoutError(f"comic job timed out after {timeout:g} s") from exc
            raise

    async def _wait_for_steps(self, steps: AttemptThreads, comic_id: str) -> None:
        while not await steps.wait(STEP_WAIT_WARNING_SECONDS):
            self._log.warning(
                "waiting for the steps of a stopped attempt", comic_id=comic_id, steps=steps.running
            )

    async def process(self, job: Job, token: str) -> str:
        """BullMQ processor: one attempt of a comic job."""
        assert self.worker is not None
        comic_id = str((job.data or {}).get("comic_id") or job.id)
        attempt = job.attemptsMade + 1
        attempts = int(job.opts.get("attempts") or 1)
        jlog = self._log.bind(comic_id=comic_id, attempt=attempt, attempts=attempts)
        jlog.info("job started")
        steps = AttemptThreads()
        task = asyncio.ensure_future(self._attempt(comic_id, steps))
        self._inflight[str(job.id)] = task
        self._tokens[str(job.id)] = token
        try:
            outcome = await task
        except asyncio.CancelledError:
            steps.stop("the worker is shutting down")
            if str(job.id) not in self._requeue:
                raise
            if not await steps.wait(STEP_STOP_SECONDS):
                # Not ours to hand on while a step runs: the stalled check will, once this
                # process (and the step's thread with it) is gone and the lock has lapsed.
                jlog.warning("job left for the stalled check", reason="a step is still running")
                raise DelayedError("left active: a step is still running") from None
            try:
                await move_active_to_wait(self.worker, job, token)
            except RequeueError as exc:  # no longer ours: the stalled check will see to it
                jlog.warning("job not moved back to the queue", error=str(exc))
            else:
                JOB_ATTEMPTS.labels(outcome="requeued").inc()
                jlog.warning("job moved back to the queue", reason="shutdown grace period over")
            # DelayedError tells BullMQ the job was moved by us: no complete, no fail.
            raise DelayedError("moved back to wait") from None
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            final = attempt >= attempts or isinstance(exc, UnrecoverableError)
            timed_out = isinstance(exc, JobTimeoutError)
            if final:
                self.failed += 1
                JOB_ATTEMPTS.labels(outcome="failed").inc()
                jlog.error("job failed", error=error, timed_out=timed_out, exc_info=exc)
                await self._record_failure(comic_id, error)
            else:
                JOB_ATTEMPTS.labels(outcome="timeout" if timed_out else "retry").inc()
                jlog.warning("attempt failed, will retry", error=error, timed_out=timed_out)
            raise
        finally:
            self._inflight.pop(str(job.id), None)
            self._tokens.pop(str(job.id), None)
            self._requeue.discard(str(job.id))
        self.processed += 1
        JOB_ATTEMPTS.labels(outcome=outcome).inc()
        jlog.info("job finished", outcome=outcome)
        return outcome

    async def _record_failure(self, comic_id: str, error: str) -> None:
        """Record the final failure; a database error is logged, not raised over the job's."""
        try:
            await self.handler.fail(comic_id, error)
        except Exception as exc:
            self._log.error("final failure not recorded", comic_id=comic_id, error=str(exc))

    def _on_failed(self, job: Job, error: BaseException) -> None:
        """BullMQ ``failed`` event: record the failures the processor never saw."""
        if not job.deferredFailure:
            return  # the processor failed it and already recorded a final failure
        # The stalled check failed the job without running it: its workers kept dying.
        comic_id = str((job.data or {}).get("comic_id") or job.id)
        message = f"{job.deferredFailure}: the workers running it died or stopped responding"
        self.failed += 1
        JOB_ATTEMPTS.labels(outcome="failed").inc()
        self._log.error("job failed", comic_id=comic_id, error=message)
        task = asyncio.ensure_future(self._record_failure(comic_id, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- lifecycle ---------------------------------------------------------------------------
    async def serve(self) -> None:
        """Run until asked to stop, then drain. Returns after a clean drain."""
        name = f"{self.hostname}:{self.pid}"
        self.worker = Worker(
            self.settings.queue_name, self.process, worker_options(self.settings, name)
        )
        self.worker.on("error", lambda err, *_: self._log.warning("queue error", error=str(err)))
        self.worker.on("failed", self._on_failed)
        heartbeat = Heartbeat(
            self.settings, self.worker.id, self.describe, self.settings.worker_heartbeat_seconds
        )
        gauges = asyncio.ensure_future(self._refresh_gauges())
        background = [gauges]
        if self.settings.reconciler_interval_seconds > 0:
            background.append(asyncio.ensure_future(reconciler.run_periodically(self.settings)))
        run_task = asyncio.ensure_future(self.worker.run())
        heartbeat.start()
        self._log.info(
            "worker started",
            worker_id=self.worker.id,
            concurrency=self.settings.worker_concurrency,
        )
        try:
            stop_task = asyncio.ensure_future(self._stop.wait())
            done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            if run_task in done:
                await self.worker.close(force=True)
                run_task.result()  # raises what ended the loop
                raise RuntimeError("the BullMQ worker loop ended without being asked to")
            await self._drain(run_task)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await heartbeat.stop()
        self._log.info("worker stopped", processed=self.processed, failed=self.failed)

    async def _drain(self, run_task: asyncio.Future[None]) -> None:
        assert self.worker is not None
        grace = self.settings.shutdown_grace_seconds
        self.draining = True
        self._log.info("draining", in_flight=sorted(self._inflight), grace_seconds=grace)
        keeper = asyncio.ensure_future(self._keep_locks())
        close_task = asyncio.ensure_future(self.worker.close())
        force_task = asyncio.ensure_future(self._force.wait())
        try:
            await asyncio.wait(
                {close_task, force_task}, timeout=grace, return_when=asyncio.FIRST_COMPLETED
            )
            force_task.cancel()
            if not close_task.done():
                self._log.warning("grace period over", requeue=sorted(self._inflight))
                self._requeue.update(self._inflight)
                for task in list(self._inflight.values()):
                    task.cancel()
            await close_task
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await asyncio.gather(run_task, *self._background, return_exceptions=True)

    async def _keep_locks(self) -> None:
        """Renew the locks of the jobs in hand until the drain ends.

        BullMQ's worker loop returns as soon as it is closing and finds no job to start,
        and stops renewing locks as it does, while the jobs in hand still run: their locks
        would lapse, and another worker's stalled check would start them again.
        """
        assert self.worker is not None
        lock_ms = round(self.settings.worker_lock_seconds * 1000)
        while True:
            held = dict(self._tokens)
            if held:
                try:
                    lost = await self.worker.backend.extendLocks(
                        list(held), list(held.values()), lock_ms
                    )
                except Exception as exc:
                    self._log.warning("job locks not renewed", jobs=sorted(held), error=str(exc))
                else:
                    if lost:
                        self._log.warning("job locks lost", jobs=sorted(map(str, lost)))
            await asyncio.sleep(self.settings.worker_lock_seconds / 3)

    async def _refresh_gauges(self) -> None:
        while True:
            try:
                await refresh_queue_gauges(self.settings)
            except Exception as exc:
                self._log.warning("queue gauges not refreshed", error=str(exc))
            await asyncio.sleep(self.settings.worker_heartbeat_seconds)


def start_metrics_server(settings: Settings) -> None:
    """Serve ``/metrics`` on ``worker_metrics_port`` (0: off)."""
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)


async def run_worker(settings: Settings, handler: JobHandler | None = None) -> None:
    """Run a worker in the current event loop until SIGTERM/SIGINT, then drain."""
    runtime = WorkerRuntime(settings, handler or ComicJob(settings))
    runtime.install_signal_handlers()
    await runtime.serve()


def main(settings: Settings, handler: JobHandler | None = None) -> int:
    """Entry point of ``morpheus worker``: returns the exit code (0 after a clean drain).

    Steps still running after the drain are daemon threads: the process does not wait
    for them.
    """
    configure_logging(settings.log_level)
    init_sentry(settings)
    start_metrics_server(settings)
    asyncio.run(run_worker(settings, handler))
    # The interpreter's last garbage collections, over every module loaded, take about
    # half a second; nothing is left to collect that the exit would not free anyway.
    gc.freeze()
    return 0
