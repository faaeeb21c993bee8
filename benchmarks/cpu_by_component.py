#!/usr/bin/env python3
"""Benchmark: where this machine's CPU goes, per component of the local platform.

    python3 benchmarks/cpu_by_component.py [--seconds 45]

Run it beside a load test of `make up` (either layout): every host of the local platform
is a container on this machine, so every process of the platform is in this machine's
process table. It reads each process's CPU time from /proc twice, --seconds apart, and
prints the machine's busy share, then each component's share of one core, largest
first. A process is put in a component by its command line (COMPONENTS); the time of
a process that ended in between (a load generator's worker, a novel's extraction
child) is counted through its parent, which reaped it.

A component above 100% uses more than one core. `idle 0%` on the first line says the
machine, not one component, is the limit.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

# (what the command line holds, the component), the first that matches wins.
COMPONENTS = (
    ("gunicorn", "backend (Gunicorn)"),
    ("morpheus worker", "workers"),
    ("morpheus_loadtest", "load generator"),
    ("locust", "load generator"),
    ("pgbouncer", "PgBouncer"),
    ("postgres", "PostgreSQL"),
    ("redis-server", "Redis"),
    ("nginx", "nginx"),
    ("prometheus", "monitoring"),
    ("alertmanager", "monitoring"),
    ("exporter", "monitoring"),
    ("dockerd", "Docker"),
    ("containerd", "Docker"),
)
TICKS = os.sysconf("SC_CLK_TCK")


def component(command: str) -> str:
    for marker, name in COMPONENTS:
        if marker in command:
            return name
    if not command:
        return "kernel threads"
    return f"other ({Path(command.split()[0]).name})"


def processes(proc: Path = Path("/proc")) -> dict[int, tuple[str, float, float]]:
    """pid -> (component, own CPU seconds, reaped children's CPU seconds)."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while being read
            continue
        # The fields after the command's name, which may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        own = (int(fields[11]) + int(fields[12])) / TICKS
        children = (int(fields[13]) + int(fields[14])) / TICKS
        found[int(entry.name)] = (component(command.strip()), own, children)
    return found


def machine() -> list[int]:
    """The machine's CPU ticks: user, nice, system, idle, iowait, irq, softirq, steal."""
    return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def shares(before: dict, after: dict) -> collections.Counter:
    """CPU seconds per component between two process tables."""
    spent: collections.Counter = collections.Counter()
    for pid, (name, own, children) in after.items():
        _, own_before, children_before = before.get(pid, (name, 0.0, 0.0))
        spent[name] += (own - own_before) + (children - children_before)
    # A process that ended in between: its parent's children's time took its whole
    # time, of which only what it spent after the first reading belongs here.
    for pid, (name, own, children) in before.items():
        if pid not in after:
            spent[name] -= own + children
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="the interval (default 45)")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be above 0")
    if not Path("/proc/stat").exists():
        print("error: no /proc here: this measures a Linux machine", file=sys.stderr)
        return 1
    print(f"==> reading every process's CPU time, {args.seconds:.0f} s apart", flush=True)
    ticks_before, before = machine(), processes()
    time.sleep(args.seconds)
    ticks_after, after = machine(), processes()
    ticks = [b - a for a, b in zip(ticks_before, ticks_after, strict=True)]
    total = sum(ticks) or 1
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    busy = ", ".join(f"{n} {100 * t / total:.0f}%" for n, t in zip(names, ticks, strict=True) if t)
    print(f"machine ({os.cpu_count()} cores): {busy}")
    for name, seconds in shares(before, after).most_common():
        if seconds / args.seconds >= 0.005:
            print(f"{100 * seconds / args.seconds:6.1f}% of a core  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
