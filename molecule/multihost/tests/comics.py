"""Comics submitted by the multihost drills: the scenario's hosts by group, comics
through one API host's backend, and their states read on the database host."""

import json
import os
import uuid

from conftest import instance
from testinfra.utils.ansible_runner import AnsibleRunner

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


def _group(name: str, default: str) -> str:
    return (AnsibleRunner(INVENTORY).get_hosts(name) if INVENTORY else [default])[0]


WORKER_HOST = _group("workers", "morpheus-mh-worker")
API_HOST = _group("api", "morpheus-mh-api-1")
DB_HOST = _group("postgres", "morpheus-mh-db")

BACKEND = "morpheus-backend-0"
AUTH_FILE = "/root/drill-authorization"
BODY_FILE = "/root/drill-novel.json"
API_NAME = "api.morpheus.localhost"
# The service takes 20 novels an hour from one key.
PER_KEY = 20
FINISHED = ("completed", "failed", "cancelled")


def sql(query: str) -> str:
    db = instance(DB_HOST)
    out = db.run(
        f"runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d morpheus -c {json.dumps(query)}"
    )
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def comic_states(ids: list[str]) -> dict[str, tuple[str, int]]:
    """Per comic: its status and its attempts."""
    if not ids:
        return {}
    listed = ",".join(f"'{i}'" for i in ids)
    rows = sql(f"SELECT id, status, attempts FROM comics WHERE id IN ({listed})")
    found = {}
    for row in rows.splitlines():
        comic, status, attempts = row.split("|")
        found[comic] = (status, int(attempts))
    return found


class Submitter:
    """Comics through one API host's backend, straight to the slot that serves when each
    is sent (the edge allows 6 submissions a minute per address; a deploy switches the
    slot), with fresh keys in a root-only file. `clean()` deletes the comics and
    revokes the keys."""

    def __init__(self) -> None:
        self.api = instance(API_HOST)
        self.address = self.api.ansible.get_variables()["morpheus_private_address"]
        self.keys: list[str] = []
        self.ids: list[str] = []

    def _url(self) -> str:
        slot = self.api.file("/var/lib/morpheus/backend/live-slot").content_string.strip()
        return f"http://{self.address}:{ {'blue': 8000, 'green': 8100}[slot] }/v1/comics"

    def _key(self) -> str:
        if len(self.ids) >= PER_KEY * len(self.keys):
            name = f"drill-{uuid.uuid4().hex[:8]}"
            created = self.api.run(f"docker exec {BACKEND} morpheus create-api-key {name}")
            assert created.rc == 0, created.stderr
            key = created.stdout.strip().splitlines()[-1]
            self.api.run(f"umask 077 && printf 'Authorization: Bearer %s\\n' '{key}' > {AUTH_FILE}")
            self.keys.append(name)
        return self.keys[-1]

    def submit(self, count: int, title: str, text: str) -> list[str]:
        """`count` comics, as fast as the backend takes them (one loop on the API host);
        returns their ids."""
        body = json.dumps({"title": title, "text": text})
        self.api.run(f"cat > {BODY_FILE} <<'EOF'\n{body}\nEOF")
        new: list[str] = []
        while count > 0:
            self._key()
            batch = min(count, PER_KEY * len(self.keys) - len(self.ids))
            answer = self.api.run(
                f"for i in $(seq {batch}); do curl -sS -m 30 -H 'Host: {API_NAME}' -H @{AUTH_FILE} "
                f"-H 'Content-Type: application/json' --data-binary @{BODY_FILE} "
                f"-w '\\n%{{http_code}}\\n' {self._url()}; done"
            )
            lines = answer.stdout.splitlines()
            assert len(lines) == 2 * batch, f"{answer.stdout} {answer.stderr}"
            for text_, code in zip(lines[::2], lines[1::2], strict=True):
                assert code == "202", f"submission answered {code}: {text_}"
                new.append(json.loads(text_)["id"])
                self.ids.append(new[-1])
            count -= batch
        return new

    def clean(self) -> None:
        for comic in self.ids:
            self.api.run(f"docker exec {BACKEND} morpheus delete-comic {comic}")
        for name in self.keys:
            self.api.run(f"docker exec {BACKEND} morpheus revoke-api-key {name}")
        self.api.run(f"rm -f {AUTH_FILE} {BODY_FILE}")
