"""The bare service's ceiling on the same machine, in the same run as a capacity search.

Keep-alive connections go straight to one API host's `/health/live` (no edge, no TLS,
no database, no queue) and send the next request as soon as the last is answered, for
a few seconds. What that serves per second is the most this machine gives the service's
processes with this load generator beside them; the capacity search's requests per
second at the users it held say how much of it the whole platform's mix reaches.

Standard library only: one process a core, each with its share of the connections on
threads, so that the generator's own interpreter is not the limit on a small machine.
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass

DEFAULT_CONNECTIONS = 32
DEFAULT_SECONDS = 20.0
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class BareResult:
    url: str
    connections: int
    seconds: float
    answered: int  # 200s
    failed: int  # other statuses, and requests that got no answer
    p50_ms: float | None
    p95_ms: float | None

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "connections": self.connections,
            "seconds": round(self.seconds, 1),
            "answered": self.answered,
            "failed": self.failed,
            "per_second": round(self.per_second),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


def percentile(ordered: list[float], share: float) -> float | None:
    """The nearest-rank percentile of an ascending list, None for an empty one."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def live_url(metrics_url: str) -> str:
    """An API host's /health/live, from its /metrics URL (the run's config has those)."""
    parts = urllib.parse.urlsplit(metrics_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/health/live", "", ""))


def serving_url(metrics_urls: list[str], source: str | None = None) -> str | None:
    """The first of the API hosts' /health/live that answers 200 now, or None. The run
    knows both slots' ports of each host, and one slot serves: the other's port is
    closed, or a release that is not live yet answers there."""
    for candidate in dict.fromkeys(live_url(url) for url in metrics_urls):
        connection = _connection(candidate, source)
        try:
            connection.request("GET", urllib.parse.urlsplit(candidate).path)
            if connection.getresponse().status == 200:
                return candidate
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
    return None


def _connection(url: str, source: str | None) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(
        parts.hostname or "",
        parts.port,
        timeout=TIMEOUT_SECONDS,
        source_address=(source, 0) if source else None,
    )


def _one_connection(url: str, source: str | None, until: float, out: list) -> None:
    """Requests on one keep-alive connection until `until`: appends (latencies, failed)."""
    path = urllib.parse.urlsplit(url).path or "/"
    latencies: list[float] = []
    failed = 0
    connection = _connection(url, source)
    while time.monotonic() < until:
        began = time.monotonic()
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
        except (OSError, http.client.HTTPException):
            failed += 1
            connection.close()
            connection = _connection(url, source)
            time.sleep(0.05)  # a refused port must not spin
            continue
        if answer.status == 200:
            latencies.append(time.monotonic() - began)
        else:
            failed += 1
        if answer.will_close:
            connection.close()
            connection = _connection(url, source)
    connection.close()
    out.append((latencies, failed))


def _process(args: tuple[str, str | None, int, float]) -> tuple[list[float], int]:
    url, source, connections, seconds = args
    until = time.monotonic() + seconds
    out: list = []
    threads = [
        threading.Thread(target=_one_connection, args=(url, source, until, out), daemon=True)
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * TIMEOUT_SECONDS)
    latencies = [latency for found, _ in out for latency in found]
    return latencies, sum(failed for _, failed in out)


def measure(
    url: str,
    source: str | None = None,
    connections: int = DEFAULT_CONNECTIONS,
    seconds: float = DEFAULT_SECONDS,
    processes: int | None = None,
) -> BareResult:
    """`connections` keep-alive connections to `url` for `seconds`, from `source`."""
    if connections < 1 or seconds <= 0:
        raise ValueError("the bare measurement needs a connection and some seconds")
    processes = max(1, min(processes or os.cpu_count() or 1, connections))
    shares = [connections // processes + (n < connections % processes) for n in range(processes)]
    jobs = [(url, source, share, seconds) for share in shares]
    if processes == 1:
        results = [_process(jobs[0])]
    else:
        # Spawned, not forked: the generator has threads (the queue's sampler), and a
        # fork copies any lock one of them holds, which can hang the child for ever.
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pending = pool.map_async(_process, jobs)
            try:
                results = pending.get(seconds + 3 * TIMEOUT_SECONDS + 30)
            except multiprocessing.TimeoutError as error:
                raise RuntimeError(
                    f"the bare measurement of {url} did not end within its time"
                ) from error
    latencies = sorted(latency for found, _ in results for latency in found)
    return BareResult(
        url=url,
        connections=connections,
        seconds=seconds,
        answered=len(latencies),
        failed=sum(failed for _, failed in results),
        p50_ms=_ms(percentile(latencies, 0.50)),
        p95_ms=_ms(percentile(latencies, 0.95)),
    )


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)
