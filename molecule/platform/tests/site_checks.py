"""What the platform scenario's verify modules share: the instance's names and
addresses, and the ways they reach it (playbooks, docker docker_inspect, SQL as the service).

The modules run in the order of their names, on one converge: the converged state
(10), the smoke test (20), monitoring and the dashboards' queries (25, 26), fault drills
that break a service and restore it (50), broken releases refused and undone (60), alert
drills (65), a short load test (70), check mode proving that nothing drifted (80),
secrets (85), Lynis (87), and refusals of bad input (90)."""

import contextlib
import json
import os
import time
import uuid
from urllib.parse import quote

import pytest
from conftest import PROJECT, ansible_playbook

ADDRESS = "172.30.20.10"
DOMAIN = "morpheus.localhost"
NAMES = [f"app.{DOMAIN}", f"dashboard.{DOMAIN}", f"api.{DOMAIN}"]
ROOT_CA = "/etc/pebble/issuing-root.pem"
APP_PASSWORD = "local-only-postgresql-app"  # test-only value (inventories/local)
BACKEND = "morpheus-backend-0"
WORKER = "morpheus-worker-0"
PROMETHEUS = f"http://{ADDRESS}:9090"  # on the private address, as in production


def playbook(name, extra_vars=None, tags=None, options=None):
    return ansible_playbook(
        PROJECT / "playbooks" / name, extra_vars, tags, timeout=1200, options=options
    )


def docker_inspect(host, container):
    result = host.run(f"docker inspect {container}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def sql(host, sql):
    """As the service: through PgBouncer on the private address."""
    result = host.run(
        f"PGPASSWORD={APP_PASSWORD} psql -X -At -v ON_ERROR_STOP=1 -h {ADDRESS} -p 6432 "
        f"-U morpheus -d morpheus -c {json.dumps(sql)}"
    )
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def prometheus_api(host, path: str, timeout: float = 5) -> dict:
    """The `data` of Prometheus's answer to `path` (/api/v1/...), fetched on the host."""
    out = host.run(
        "python3 -c 'import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())' "
        f"'{PROMETHEUS}{path}' {timeout}"
    )
    assert out.rc == 0, f"{path}: {out.stderr}"
    answer = json.loads(out.stdout)
    assert answer["status"] == "success", answer
    return answer["data"]


def promql(host, expr: str, timeout: float = 5) -> list:
    """The series of an instant query."""
    return prometheus_api(host, f"/api/v1/query?query={quote(expr)}", timeout)["result"]


# Run on the host with the queries' JSON list in EXPRS: one JSON answer per query out.
_BATCH = """
import json, sys, urllib.parse, urllib.request
base, timeout = sys.argv[1], float(sys.argv[2])
answers = []
for expr in json.loads(EXPRS):
    url = base + "/api/v1/query?query=" + urllib.parse.quote(expr)
    try:
        answers.append(json.load(urllib.request.urlopen(url, timeout=timeout)))
    except Exception as exc:
        answers.append({"status": "error", "error": repr(exc)})
print(json.dumps(answers))
"""


def promql_batch(host, exprs: list[str], timeout: float = 10) -> list[dict]:
    """Prometheus's whole answer to each instant query, in order, in one round trip to
    the host (a query per `host.run` costs a process and a docker exec each)."""
    script = f"EXPRS = {json.dumps(json.dumps(exprs))}\n{_BATCH}"
    out = host.run(f"python3 - '{PROMETHEUS}' {timeout} <<'EOF'\n{script}\nEOF")
    assert out.rc == 0, out.stderr
    answers = json.loads(out.stdout)
    assert len(answers) == len(exprs), answers
    return answers


def release_id(host):
    return docker_inspect(host, BACKEND)["Config"]["Labels"]["org.morpheus.release"]


def backend_url(host):
    """The backend on the private address, on the port of the slot that serves: straight
    to it, the drills measure the queue and the database, not the edge's per-address
    limits (6 submissions a minute)."""
    slot = host.file("/var/lib/morpheus/backend/live-slot").content_string.strip()
    return f"http://{ADDRESS}:{ {'blue': 8000, 'green': 8100}[slot] }"


# Comics submitted by the drills and the rolling update's checks.
API_NAME = f"api.{DOMAIN}"
AUTH_FILE = "/root/drill-authorization"
COMICS = 6
FINISHED = ("completed", "failed", "cancelled")
NOVEL = "\n\n".join(
    f"Chapter {n}\n\nThe lighthouse keeper climbed the stairs at dusk. "
    f'"The lamp must burn tonight," she said to the boy on the landing.\n\n'
    "Far below, the sea rolled against the rocks. A gull cried once and was gone. "
    "The boy counted the steps aloud, and the keeper laughed at his numbers."
    for n in range(1, 4)
)
# How long a drill waits for its comics (MORPHEUS_DRILL_TIMEOUT shortens it to measure
# a release that loses them).
DRILL_TIMEOUT = float(os.environ.get("MORPHEUS_DRILL_TIMEOUT", "240"))


@contextlib.contextmanager
def drill_key(host):
    """A fresh API key for one drill (the service allows 20 submissions an hour per
    key), in a root-only header file so that it never shows in a process list; the
    drill's comics and the key are removed afterwards."""
    name = f"drill-{uuid.uuid4().hex[:8]}"
    created = host.run(f"docker exec {BACKEND} morpheus create-api-key {name}")
    assert created.rc == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    host.run(f"umask 077 && printf 'Authorization: Bearer %s\\n' '{key}' > {AUTH_FILE}")
    try:
        yield name
    finally:
        ids = sql(
            host,
            "SELECT c.id FROM comics c JOIN api_keys k ON k.id = c.api_key_id "
            f"WHERE k.name = '{name}'",
        )
        for comic in ids.split():
            host.run(f"docker exec {BACKEND} morpheus delete-comic {comic}")
        host.run(f"docker exec {BACKEND} morpheus revoke-api-key {name}")
        host.run(f"rm -f {AUTH_FILE}")


def submit(host, count: int = COMICS, title: str = "Drill comic", text: str = NOVEL) -> list[str]:
    ids = []
    for n in range(count):
        body = json.dumps({"title": f"{title} {n}", "text": text})
        answer = host.run(
            f"curl -sS -m 30 -H 'Host: {API_NAME}' -H @{AUTH_FILE} "
            f"-H 'Content-Type: application/json' --data-binary @- "
            f"-w '\\n%{{http_code}}' {backend_url(host)}/v1/comics <<'EOF'\n{body}\nEOF"
        )
        text, _, code = answer.stdout.rpartition("\n")
        assert code == "202", f"submission answered {code}: {text} {answer.stderr}"
        ids.append(json.loads(text)["id"])
    return ids


def states(host, ids: list[str]) -> dict[str, tuple[str, int, int, int]]:
    """Per comic: status, attempts, pages stored, distinct page numbers."""
    listed = ",".join(f"'{i}'" for i in ids)
    rows = sql(
        host,
        "SELECT c.id, c.status, c.attempts, count(p.id), count(DISTINCT p.number) "
        f"FROM comics c LEFT JOIN pages p ON p.comic_id = c.id WHERE c.id IN ({listed}) "
        "GROUP BY c.id, c.status, c.attempts",
    )
    found = {}
    for row in rows.splitlines():
        comic, status, attempts, pages, distinct = row.split("|")
        found[comic] = (status, int(attempts), int(pages), int(distinct))
    return found


def wait_until_finished(host, ids: list[str], timeout: float = DRILL_TIMEOUT) -> float:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        seen = states(host, ids)
        if len(seen) == len(ids) and all(s[0] in FINISHED for s in seen.values()):
            return time.monotonic() - started
        time.sleep(1)
    pytest.fail(
        f"not every comic finished within {timeout:.0f}s: {states(host, ids)}\n"
        + host.run(f"docker logs --tail 40 {WORKER}").stderr
    )


def assert_each_completed_once(host, ids: list[str]) -> None:
    for comic, (status, attempts, pages, distinct) in states(host, ids).items():
        assert status == "completed", f"{comic} ended {status}"
        # One attempt: no job ran twice, and no page was written twice.
        assert attempts == 1, f"{comic} ran {attempts} times"
        assert pages == distinct > 0, f"{comic}: {pages} pages, {distinct} numbers"


def unfinished(host, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status, *_ in states(host, ids).values():
        counts[status] = counts.get(status, 0) + 1
    return counts
