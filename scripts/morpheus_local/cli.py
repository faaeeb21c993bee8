"""The command line: `up`, `down` and `status`, and how their failures are reported."""

from __future__ import annotations

import argparse
import sys
import time

from . import __doc__ as usage
from . import process
from .containers import ensure_containers, preflight, wait_for_systemd
from .errors import LocalError
from .hosts import LAYOUTS, host_vars, load_inventory
from .labels import SELECTOR, remove_labelled
from .network import ensure_network
from .output import say, summary
from .paths import BIN, ROOT
from .playbook import copy_ca, run_playbook
from .ports import requested_ports
from .status import status


def up(layout: str) -> None:
    started = time.monotonic()
    if not (BIN / "ansible-playbook").exists():
        raise LocalError(".venv/bin/ansible-playbook is missing", "run `make setup` first.")
    ports = requested_ports()
    say("starting the Docker engine and the base images (scripts/harness up)")
    harness = process.run([sys.executable, str(ROOT / "scripts" / "harness"), "up"])
    if harness.returncode != 0:
        raise LocalError(
            "scripts/harness up failed (its error is above)",
            "do what it says, then rerun `make up`.",
        )
    say(f"reading {LAYOUTS[layout]}")
    inventory = load_inventory(layout)
    existing, ports = preflight(inventory, layout, ports)
    ensure_network()
    ensure_containers(inventory, layout, ports, existing)
    for host in inventory.hosts:
        say(f"waiting for systemd in {host.name}")
        waited = time.monotonic()
        state = wait_for_systemd(host.name)
        say(f"{host.name}: systemd {state} ({time.monotonic() - waited:.0f} s)")
    run_playbook(inventory)
    copy_ca(inventory)
    variables = host_vars(inventory, inventory.first("edge"))
    for line in summary(inventory, variables, ports, time.monotonic() - started):
        print(line)


def down() -> None:
    if not process.docker_answers():
        say("no Docker engine answers: nothing to remove")
        return
    removed = remove_labelled(SELECTOR)
    if removed:
        say(f"removed {len(removed)} objects labelled {SELECTOR}")
    else:
        say(f"nothing to remove: no container, volume or network is labelled {SELECTOR}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=usage, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="action", required=True)
    start = commands.add_parser("up", help="start the whole platform locally")
    start.add_argument("--layout", choices=sorted(LAYOUTS), default="single")
    commands.add_parser("down", help=f"remove everything labelled {SELECTOR}")
    commands.add_parser("status", help="the local containers and whether the edge answers")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            up(args.layout)
        elif args.action == "down":
            down()
        else:
            status()
    except LocalError as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"next: {error.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        print("next: rerun `make up` to go on (it is idempotent), or `make down`.", file=sys.stderr)
        return 130
    return 0
