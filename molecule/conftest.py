"""Helpers shared by every scenario's testinfra tests."""

from __future__ import annotations

import inspect
import json
import os
import shlex
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ansible_runner
import pytest
import testinfra
import testinfra.host
import yaml

PROJECT = Path(__file__).resolve().parent.parent
# Where each command a test runs on an instance, and each playbook it runs, goes with its
# time when it took SLOW_SECONDS or more: one JSON line each (scripts/test names the file
# per scenario; `make test-times` lists the slowest). A test's time says little of where
# it went; a command that waited two minutes for a timeout says it all.
COMMAND_TIMES = os.environ.get("MORPHEUS_COMMAND_TIMES")
SLOW_SECONDS = 1.0
_current_test = {"id": "(before the first test)"}
_nested = threading.local()


def record_time(what: str, seconds: float) -> None:
    if COMMAND_TIMES and seconds >= SLOW_SECONDS:
        line = {"test": _current_test["id"], "command": what, "seconds": round(seconds, 2)}
        with open(COMMAND_TIMES, "a") as out:
            out.write(json.dumps(line) + "\n")


def pytest_configure(config):
    """Register the scenarios' marker, and time every command run through a testinfra
    host (Host.run is what its modules and the tests call) when scripts/test asks for
    the figures."""
    config.addinivalue_line(
        "markers",
        "drill: breaks, loads, updates or audits the converged platform and leaves it as"
        " it found it, minutes a module (`scripts/test --no-drills` leaves them out)",
    )
    if not COMMAND_TIMES:
        return
    Path(COMMAND_TIMES).parent.mkdir(parents=True, exist_ok=True)
    run = testinfra.host.Host.run
    if getattr(run, "timed", False):
        return

    def timed(self, command, *args, **kwargs):
        # The Ansible backend runs a command through a host of the connection's own
        # backend (Docker's), so calls nest: the outermost one is timed.
        if getattr(_nested, "running", False):
            return run(self, command, *args, **kwargs)
        _nested.running = True
        started = time.monotonic()
        try:
            return run(self, command, *args, **kwargs)
        finally:
            _nested.running = False
            shown = command % tuple(shlex.quote(str(a)) for a in args) if args else command
            record_time(f"{self.backend.hostname}: {shown}", time.monotonic() - started)

    timed.timed = True
    testinfra.host.Host.run = timed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """The test whose setup, call or teardown runs the commands timed meanwhile (its
    module's fixtures included, which set up with it)."""
    _current_test["id"] = item.nodeid
    yield


def instance(name: str):
    """A testinfra host for the scenario's instance `name`, through its inventory."""
    return testinfra.get_host(
        f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}"
    )


def wait_for(what: str, check, timeout: float = 90.0, interval: float = 2.0):
    """Call `check()` until it returns something true, and return that. On timeout the
    failure shows `check(last=True)` when `check` takes that argument (what it saw)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            takes_last = "last" in inspect.signature(check).parameters
            seen = f": {check(last=True)}" if takes_last else ""
            pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s{seen}")
        time.sleep(interval)
    return value


def journal(host, unit: str, lines: int = 50) -> str:
    """The unit's last journal lines, for assertion messages."""
    out = host.run(f"journalctl -u {unit} --no-pager -n {lines}")
    return f"\n--- journalctl -u {unit} ---\n{out.stdout}{out.stderr}"


def assert_service_up(host, unit: str) -> None:
    service = host.service(unit)
    assert service.is_enabled, f"{unit} is not enabled{journal(host, unit)}"
    assert service.is_running, f"{unit} is not running{journal(host, unit)}"


def ansible_playbook(
    playbook: Path,
    extra_vars: dict | None = None,
    tags: str | None = None,
    timeout: int = 600,
    options: list[str] | None = None,
    inventory_vars: dict | None = None,
) -> tuple[int, str]:
    """Run a playbook against this scenario's instances, as `molecule verify` sees them,
    through ansible-runner.

    `options` are further ansible-playbook arguments (--check, --diff, --limit ...).
    `inventory_vars` change what the inventory says of every instance, where extra
    variables would be too strong (a playbook's set_fact cannot override them): they are
    given as host variables of a second inventory source, which win over the scenario's
    group variables.
    Returns the exit code and the whole output on one line (white space folded,
    JSON-escaped quotes undone), ready for `message in output` assertions.
    """
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        pytest.skip("MOLECULE_INVENTORY_FILE is not set: run these tests through `molecule verify`")
    settings = {
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
        "ANSIBLE_FILTER_PLUGINS": str(PROJECT / "filter_plugins"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        # Instances are new on every run: never reuse facts cached by another.
        "ANSIBLE_CACHE_PLUGIN": "memory",
        # Each task's time, beside the converge's (MORPHEUS_TASK_TIMES, make test-times).
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks,task_times",
        "ANSIBLE_CALLBACK_PLUGINS": str(PROJECT / "molecule" / "shared" / "callback_plugins"),
        # As the converge runs: each host's tasks through one interpreter (Mitogen).
        "ANSIBLE_STRATEGY_PLUGINS": str(PROJECT / "molecule" / "shared" / "strategy_plugins"),
        "ANSIBLE_STRATEGY": "mitogen_linear",
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="morpheus-runner-") as private:
        sources = [inventory]
        if inventory_vars:
            hosts = yaml.safe_load(Path(inventory).read_text())["all"]["hosts"]
            override = Path(private) / "override.yml"
            override.write_text(
                json.dumps({"all": {"hosts": dict.fromkeys(hosts, inventory_vars)}})
            )
            sources.append(str(override))
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(PROJECT),
            playbook=str(playbook),
            inventory=sources,
            extravars=extra_vars or {},
            tags=tags,
            cmdline=shlex.join(options) if options else None,
            envvars=settings,
            timeout=timeout,
            quiet=True,
        )
        output = runner.stdout.read()
    record_time(f"ansible-playbook {playbook.name}", time.monotonic() - started)
    if runner.status == "timeout":
        pytest.fail(f"{playbook.name} ran past {timeout} s:\n{output[-3000:]}")
    output = output.replace('\\"', '"')
    return runner.rc, " ".join(output.split())


def scenario_file(name: str) -> Path:
    """A file of the scenario under test."""
    return Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / name


@pytest.fixture(scope="session")
def run_playbook() -> Callable[..., tuple[int, str]]:
    """ansible_playbook, as a fixture: used by negative tests, where bad variables
    must stop the play in preflight with a message a person can act on."""
    return ansible_playbook
