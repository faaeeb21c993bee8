"""Bounded HTTPS load through an edge host while a deploy runs; stdlib only.

Runs on the edge host. CLIENTS threads, each from its own loopback address
(127.0.0.<10+n>, so that the edge's per-address limits see many clients), loop over
the three public names: /health on each (which names the release that answered), the
storefront's page and the dashboard's login page. Each client keeps to at most RATE
requests a second. The load stops once STOP_FILE exists and at least MIN_REQUESTS were
made, or after MAX_SECONDS.

Writes one JSON document to OUTPUT: the request count, the failures (5xx, connection
errors, timeouts: each with its time and cause), the 429s, the requests sent again on
a new connection (as browsers do when the server closed a kept-alive one), and for
each release seen on /health the first and last time it answered.

Environment: EDGE_NAMES (storefront,dashboard,api host names), EDGE_CA, CLIENTS (8),
RATE (12), MIN_REQUESTS (10000), MAX_SECONDS (1800), STOP_FILE, OUTPUT.
"""

import http.client
import json
import os
import socket
import ssl
import threading
import time

STOREFRONT, DASHBOARD, API = os.environ["EDGE_NAMES"].split(",")
CLIENTS = int(os.environ.get("CLIENTS", "8"))
RATE = float(os.environ.get("RATE", "12"))
MIN_REQUESTS = int(os.environ.get("MIN_REQUESTS", "10000"))
MAX_SECONDS = float(os.environ.get("MAX_SECONDS", "1800"))
STOP_FILE = os.environ["STOP_FILE"]
OUTPUT = os.environ["OUTPUT"]
TIMEOUT = 20.0
TARGETS = [
    (API, "/health"),
    (STOREFRONT, "/"),
    (STOREFRONT, "/health"),
    (DASHBOARD, "/login"),
    (DASHBOARD, "/health"),
]

context = ssl.create_default_context(cafile=os.environ["EDGE_CA"])
lock = threading.Lock()
count = 0
limited: dict[str, int] = {}
retried = 0
failures: list[dict] = []
releases: dict[str, list[float]] = {}
started = time.monotonic()


class EdgeConnection(http.client.HTTPSConnection):
    """HTTPS to this host's nginx, with the public name for SNI, Host and the check."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout, self.source_address)
        self.sock = context.wrap_socket(sock, server_hostname=self.host)


def enough() -> bool:
    elapsed = time.monotonic() - started
    return elapsed > MAX_SECONDS or (os.path.exists(STOP_FILE) and count >= MIN_REQUESTS)


def fetch(connections: dict, name: str, path: str, source: tuple) -> tuple[int, bytes]:
    """One GET. Like a browser, a request that finds its kept-alive connection closed
    by the server before any answer (an nginx reload closes idle ones) is sent once more
    on a new connection; that is not a failure."""
    global retried
    for attempt in (1, 2):
        connection = connections.get(name)
        reused = connection is not None
        if connection is None:
            connection = EdgeConnection(name, 443, timeout=TIMEOUT, source_address=source)
            connections[name] = connection
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            connections.pop(name, None)
            connection.close()
            if reused and attempt == 1:
                with lock:
                    retried += 1
                continue
            raise
        except (OSError, http.client.HTTPException):
            connections.pop(name, None)
            connection.close()
            raise
        if answer.getheader("Connection", "").lower() == "close":
            connections.pop(name, None)
            connection.close()
        return answer.status, body
    raise AssertionError("unreachable")


def client(number: int) -> None:
    global count
    source = (f"127.0.0.{10 + number}", 0)
    connections: dict[str, EdgeConnection] = {}
    turn = number
    while not enough():
        began = time.monotonic()
        name, path = TARGETS[turn % len(TARGETS)]
        turn += 1
        record: dict = {"t": round(began - started, 3), "host": name, "path": path}
        try:
            status, body = fetch(connections, name, path, source)
        except (OSError, http.client.HTTPException) as error:
            record.update(status=0, error=f"{type(error).__name__}: {error}")
            with lock:
                count += 1
                failures.append(record)
            continue
        with lock:
            count += 1
            if status == 429:
                key = f"{name}{path}"
                limited[key] = limited.get(key, 0) + 1
            elif status >= 500:
                record.update(status=status, body=body[:200].decode("utf-8", "replace"))
                failures.append(record)
            elif path == "/health" and status == 200:
                release = json.loads(body).get("release_id", "?")
                seen = releases.setdefault(release, [record["t"], record["t"]])
                seen[0] = min(seen[0], record["t"])
                seen[1] = max(seen[1], record["t"])
        time.sleep(max(0.0, 1.0 / RATE - (time.monotonic() - began)))


threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
report = {
    "requests": count,
    "seconds": round(time.monotonic() - started, 1),
    "failures": failures[:50],
    "failure_count": len(failures),
    "rate_limited": sum(limited.values()),
    "rate_limited_by_target": limited,
    "retried_on_a_new_connection": retried,
    "releases": releases,
}
with open(OUTPUT + ".partial", "w") as out:
    json.dump(report, out)
os.replace(OUTPUT + ".partial", OUTPUT)
