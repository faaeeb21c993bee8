"""Converging the hosts with playbooks/site.yml, and the local CA it leaves behind."""

from __future__ import annotations

import re
import subprocess
import sys

from . import process
from .errors import LocalError
from .hosts import Inventory
from .output import say
from .paths import BIN, CA_FILE, CACHE, PLAYBOOK, PLAYBOOK_LOG, ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_playbook(inventory: Inventory) -> None:
    tool = BIN / "ansible-playbook"
    if not (ROOT / PLAYBOOK).exists():
        raise LocalError(
            f"{PLAYBOOK} is missing from this checkout",
            "update the checkout (git pull), then rerun `make up`.",
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    log_name = PLAYBOOK_LOG.relative_to(ROOT)
    say(f"converging with {PLAYBOOK} -i {inventory.path} (log: {log_name})")
    env = process.ansible_env()
    if sys.stdout.isatty():
        env["ANSIBLE_FORCE_COLOR"] = "1"
    # ansible.cfg caches facts for an hour: containers made again after `make down`
    # keep their names, so cached facts would describe the ones that are gone.
    cmd = [str(tool), PLAYBOOK, "-i", inventory.path, "--flush-cache"]
    with PLAYBOOK_LOG.open("w") as log:
        child = subprocess.Popen(  # noqa: S603
            cmd,
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            for line in child.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(ANSI.sub("", line))
            code = child.wait()
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            raise
    if code != 0:
        raise LocalError(
            f"{PLAYBOOK} failed (exit {code}); its output is in {log_name}",
            "fix what the failed task says and rerun `make up` (it is idempotent: the "
            "containers are reused); `make down` removes everything to start over.",
        )


def copy_ca(inventory: Inventory) -> None:
    acme = inventory.first("acme")
    CACHE.mkdir(parents=True, exist_ok=True)
    copied = process.docker("cp", f"{acme.name}:/etc/pebble/issuing-root.pem", str(CA_FILE))
    if copied.returncode != 0:
        raise LocalError(
            f"could not copy the local CA out of {acme.name}: {copied.stderr.strip()}",
            f"the playbook writes /etc/pebble/issuing-root.pem on {acme.name}: rerun `make up`.",
        )
