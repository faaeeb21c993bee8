"""``morpheus worker`` with a job whose threaded step spins on the CPU and never checks
its stop flag: what a step stuck in a library call looks like to the worker.

Run by the process tests as ``python stubborn_worker.py`` with the worker's settings in
the environment; each job spins for ``STUBBORN_SECONDS`` (default 60) and completes.
"""

from __future__ import annotations

import os
import sys
import time

from morpheus.settings import Settings
from morpheus.worker import runtime, threads


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:  # no stop flag checked, on purpose
        total += sum(range(1000))


class StubbornJob:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def run(self, comic_id: str) -> str:
        await threads.to_thread(spin, self.seconds)
        return "completed"

    async def fail(self, comic_id: str, error: str) -> None:
        return None


if __name__ == "__main__":
    seconds = float(os.environ.get("STUBBORN_SECONDS", "60"))
    sys.exit(runtime.main(Settings(), StubbornJob(seconds)))
