"""benchmarks/cpu_by_component.py: which component a process is, and the CPU time of an
interval, including that of processes that ended in it."""

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "cpu_by_component", ROOT / "benchmarks" / "cpu_by_component.py"
)
cpu = importlib.util.module_from_spec(spec)
sys.modules["cpu_by_component"] = cpu
spec.loader.exec_module(cpu)


def test_processes_are_put_in_the_platform_s_components():
    assert cpu.component("/opt/morpheus/bin/python3 -m gunicorn --config x") == "backend (Gunicorn)"
    assert cpu.component("/opt/morpheus/bin/python3 /opt/morpheus/bin/morpheus worker") == "workers"
    assert cpu.component("python -m morpheus_loadtest.generator") == "load generator"
    assert cpu.component("pgbouncer /etc/pgbouncer/pgbouncer.ini") == "PgBouncer"
    assert cpu.component("postgres: 15/main: morpheus morpheus 127.0.0.1 idle") == "PostgreSQL"
    assert cpu.component("") == "kernel threads"
    assert cpu.component("/usr/sbin/sshd -D") == "other (sshd)"


def test_an_interval_counts_what_each_process_spent_in_it():
    before = {1: ("backend (Gunicorn)", 10.0, 0.0), 2: ("workers", 5.0, 1.0)}
    after = {1: ("backend (Gunicorn)", 12.5, 0.0), 2: ("workers", 6.0, 1.0), 3: ("Redis", 0.5, 0.0)}
    spent = cpu.shares(before, after)
    assert spent == {"backend (Gunicorn)": 2.5, "workers": 1.0, "Redis": 0.5}


def test_a_process_that_ended_counts_through_its_parent_once():
    """A child had spent 3 s before the interval and 1 s in it, then ended: its parent,
    which reaped it, holds all 4 s in its children's time; only 1 s is the interval's."""
    before = {10: ("load generator", 2.0, 0.0), 11: ("load generator", 3.0, 0.0)}
    after = {10: ("load generator", 2.5, 4.0)}
    assert cpu.shares(before, after) == {"load generator": 1.5}


def test_this_machine_s_own_process_is_read():
    found = cpu.processes()
    assert os.getpid() in found
    name, own, children = found[os.getpid()]
    assert name.startswith("other (")
    assert own > 0 and children >= 0
    assert len(cpu.machine()) == 8
