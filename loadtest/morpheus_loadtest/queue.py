"""The comic queue during a run, from the service's own /metrics (docs/metrics.md).

Each backend container reads the queue's figures from Redis when it is scraped
(``morpheus_queue_jobs{state}``), so one answer a few seconds apart is a faithful
picture: no Prometheus scrape interval in between. The API hosts answer /metrics on
their private addresses only (not on the public names), as Prometheus scrapes them.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

SAMPLE = re.compile(r'^morpheus_queue_jobs\{state="(?P<state>[a-z]+)"\}\s+(?P<value>\S+)$')
STATES = ("waiting", "active", "delayed", "failed", "completed")
TIMEOUT_SECONDS = 3.0


def queue_jobs(exposition: str) -> dict[str, int]:
    """``morpheus_queue_jobs`` by state from a Prometheus text exposition ({} if absent)."""
    found = {}
    for line in exposition.splitlines():
        match = SAMPLE.match(line.strip())
        if match:
            found[match.group("state")] = round(float(match.group("value")))
    return found


@dataclass(frozen=True)
class QueueSample:
    at: float  # epoch seconds
    waiting: int
    active: int


def fetch(url: str, timeout: float = TIMEOUT_SECONDS) -> str:
    # The URLs are the API hosts' own, from the inventory: http on the private network.
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310
        return answer.read().decode("utf-8", "replace")


class QueueSampler:
    """Samples the queue every `interval` seconds in a thread, from the first of `urls`
    that answers (another when it stops answering, as when a deploy moves the slot)."""

    def __init__(
        self,
        urls: list[str],
        interval: float = 5.0,
        read: Callable[[str], str] = fetch,
        clock: Callable[[], float] = time.time,
        on_sample: Callable[[QueueSample], None] | None = None,
    ) -> None:
        self.urls = list(urls)
        self.on_sample = on_sample
        self.interval = interval
        self.read = read
        self.clock = clock
        self.samples: list[QueueSample] = []
        self.misses = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-sampler", daemon=True)

    def sample(self) -> QueueSample | None:
        for index, url in enumerate(self.urls):
            try:
                jobs = queue_jobs(self.read(url))
            except OSError:
                continue
            if not jobs:
                continue
            if index:  # answer from this one first next time
                self.urls.insert(0, self.urls.pop(index))
            found = QueueSample(self.clock(), jobs.get("waiting", 0), jobs.get("active", 0))
            self.samples.append(found)
            if self.on_sample is not None:
                self.on_sample(found)
            return found
        self.misses += 1
        return None

    @property
    def latest(self) -> QueueSample | None:
        return self.samples[-1] if self.samples else None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self.urls:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=TIMEOUT_SECONDS * len(self.urls) + 1)
