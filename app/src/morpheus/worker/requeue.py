"""Put an active job back in ``wait``, for a worker that stops before the job is done.

BullMQ ships the Lua script ``moveJobFromActiveToWait`` (Node's worker uses it for
rate-limited jobs) but the Python port does not expose it. It checks the lock token, drops
the lock and moves the job to the head-of-queue end of ``wait`` atomically, without
counting an attempt, so another worker takes the job at once.
"""

from __future__ import annotations

from bullmq import Job, Worker
from bullmq.redis_connection import loadScript

_SCRIPT = "moveJobFromActiveToWait-9.lua"
# Error codes of the script (BullMQ's ErrorCode values).
_ERRORS = {-1: "the job does not exist", -2: "the job lock is missing", -6: "the lock is not ours"}


class RequeueError(Exception):
    """The job could not be moved back to wait (it is no longer ours)."""


async def move_active_to_wait(worker: Worker, job: Job, token: str) -> None:
    """Move ``job``, held by ``worker`` with ``token``, from active back to wait."""
    keys = worker.keys
    script = worker.client.register_script(loadScript(_SCRIPT))
    result = await script(
        keys=[
            keys["active"],
            keys["wait"],
            keys["stalled"],
            keys["paused"],
            keys["meta"],
            keys["limiter"],
            keys["prioritized"],
            keys["marker"],
            keys["events"],
        ],
        args=[job.id, token, keys[""] + str(job.id)],
    )
    if isinstance(result, int) and result < 0:
        reason = _ERRORS.get(result, f"error code {result}")
        raise RequeueError(f"job {job.id} not moved back to wait: {reason}")
