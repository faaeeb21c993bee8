"""Steady API traffic through the edge while PostgreSQL restarts, run on the instance.

Sends GET /v1/comics/<id> over HTTPS every INTERVAL seconds (the API key's lookup and the
comic's both need the database) and probes PostgreSQL with pg_isready every 50 ms, then
restarts PostgreSQL after LEAD seconds and keeps going until TAIL seconds after it is
back. Prints one JSON document: every response (time, status, content type,
Retry-After) and the times PostgreSQL went down and came back. Standard library only.

Environment: DRILL_URL, DRILL_HOST_NAME, DRILL_CA, DRILL_AUTH_FILE (an Authorization
header line), DRILL_LEAD, DRILL_TAIL, DRILL_INTERVAL.
"""

import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

URL = os.environ["DRILL_URL"]
NAME = os.environ["DRILL_HOST_NAME"]
LEAD = float(os.environ.get("DRILL_LEAD", "3"))
TAIL = float(os.environ.get("DRILL_TAIL", "6"))
INTERVAL = float(os.environ.get("DRILL_INTERVAL", "0.2"))
AUTH = open(os.environ["DRILL_AUTH_FILE"]).read().split(":", 1)[1].strip()  # noqa: SIM115

stop = threading.Event()
responses: list[dict] = []
probes: list[tuple[float, bool]] = []


class EdgeConnection(urllib.request.HTTPSHandler):
    """Connects to 127.0.0.1 while SNI and Host name the public name."""

    def __init__(self) -> None:
        context = ssl.create_default_context(cafile=os.environ["DRILL_CA"])
        super().__init__(context=context)


real_getaddrinfo = socket.getaddrinfo


def local_getaddrinfo(host, *args, **kwargs):
    return real_getaddrinfo("127.0.0.1" if host == NAME else host, *args, **kwargs)


socket.getaddrinfo = local_getaddrinfo
opener = urllib.request.build_opener(EdgeConnection())


def traffic() -> None:
    while not stop.is_set():
        started = time.monotonic()
        request = urllib.request.Request(URL, headers={"Authorization": AUTH})
        record = {"t": started}
        try:
            with opener.open(request, timeout=20) as answer:
                record.update(status=answer.status, type=answer.headers.get("Content-Type", ""))
                answer.read()
        except urllib.error.HTTPError as error:
            record.update(
                status=error.code,
                type=error.headers.get("Content-Type", ""),
                retry_after=error.headers.get("Retry-After"),
            )
        except OSError as error:
            record.update(status=0, error=str(error))
        record["seconds"] = time.monotonic() - started
        responses.append(record)
        time.sleep(max(0.0, INTERVAL - record["seconds"]))


def probe() -> None:
    while not stop.is_set():
        ready = subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False
        ).returncode
        probes.append((time.monotonic(), ready == 0))
        time.sleep(0.05)


threads = [threading.Thread(target=traffic), threading.Thread(target=probe)]
for thread in threads:
    thread.start()
time.sleep(LEAD)
restart_at = time.monotonic()
subprocess.run(["systemctl", "restart", "postgresql"], check=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not (probes and probes[-1][0] > restart_at and probes[-1][1]):
    time.sleep(0.05)
time.sleep(TAIL)
stop.set()
for thread in threads:
    thread.join()
down = [t for t, ok in probes if t >= restart_at and not ok]
up = [t for t, ok in probes if down and t > down[0] and ok]
print(
    json.dumps(
        {
            "restart_at": restart_at,
            "down_at": down[0] if down else None,
            "up_at": up[0] if up else None,
            "responses": responses,
        }
    )
)
