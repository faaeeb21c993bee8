"""The comic queue: BullMQ on Redis, through PyPI's ``bullmq`` (the official Python port).

Kept, not replaced by Dramatiq. The port shares BullMQ's Lua scripts, so Node producers
and BullMQ dashboards read the same queues, and it already does the hard parts reliably:
atomic moves between states, lock renewal for active jobs, the stalled-job checker that
puts the jobs of a dead worker back in ``wait``, per-job ``attempts`` with exponential
``backoff``, custom job ids (so a duplicate submission is not enqueued twice), and
reconnection after Redis restarts.

What the port lacks, and where this project adds it:

- a per-job timeout: :mod:`morpheus.worker.runtime` wraps each attempt in
  ``asyncio.timeout`` and fails it with :class:`~morpheus.worker.runtime.JobTimeoutError`,
  so BullMQ's own retry/backoff takes over;
- a SIGTERM drain with a grace period: ``Worker.close()`` stops fetching and waits without
  a bound; past the grace period :mod:`morpheus.worker.requeue` moves each in-flight job
  from ``active`` back to ``wait`` with BullMQ's own ``moveJobFromActiveToWait`` script
  (shipped in the package but not exposed by its Python API), so another worker takes it
  at once instead of after a lock expiry and a stalled check that would count it as stalled;
- the final failed state in PostgreSQL (``morpheus.db.comics.fail_comic``): the worker
  decides, with the same rule BullMQ applies (``attemptsMade + 1 >= attempts``), that an
  attempt is the last one; a job that BullMQ's stalled check fails (its workers died more
  than ``worker_max_stalled_count`` times) is recorded from the worker's ``failed`` event;
- Prometheus figures (:mod:`morpheus.queue.metrics`, :mod:`morpheus.worker.metrics`);
- a heartbeat per worker (:mod:`morpheus.worker.heartbeat`): Redis keys with a TTL. The
  port has ``Queue.get_workers`` (``CLIENT LIST``), but an open connection says nothing about
  whether the worker's event loop is alive, and managed Redis services often refuse
  ``CLIENT LIST``;
- bounded waits on Redis: the port's connections retry up to 20 times with backoff capped at
  20 s and set no socket timeout, so :mod:`morpheus.queue.connection` adds socket timeouts
  to the URL and callers bound each call with ``asyncio.timeout``;
- jobs Redis lost (a restart without its data, a FLUSHALL): PostgreSQL says which comics
  must run, and :mod:`morpheus.worker.reconciler` queues again those with no job.
"""
