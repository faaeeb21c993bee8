"""A run, from the machine that starts it: keys, image, container, report, clean-up.

1. checks that Docker answers and that the platform's network exists;
2. runs playbooks/loadtest.yml (ansible-runner): one API key per user, and what the load
   generator needs to know of the platform (names, addresses, dashboard login);
3. takes a client address per user on that network (addresses.allocate);
4. builds the load generator's image when its definition changed (image.ensure_image);
5. runs the container on the network (NET_ADMIN, the public names pointed at the
   edge's private address, the CA mounted), shows its progress, keeps its output in
   generator.log;
6. always: removes the container (its addresses go with it), revokes the run's keys and
   deletes the comics it made (playbooks/loadtest.yml again), removes the secrets.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import docker
from .addresses import allocate, free_addresses
from .capacity import DEFAULT_STEPS, address_shortfall, step_counts
from .config import CA_FILE, CapacityPlan, RunConfig
from .errors import LoadTestError
from .image import ensure_image

ROOT = Path(__file__).resolve().parents[2]
LOADTEST_DIR = ROOT / "loadtest"
PLAYBOOK = ROOT / "playbooks" / "loadtest.yml"
RESULTS_ROOT = ROOT / ".cache" / "loadtest"
LOCAL_CA = ROOT / ".cache" / "local" / "ca.pem"
LABEL = "org.morpheus.loadtest"
LOCAL_LABEL = "org.morpheus.local"
LAYOUTS = {"single": "inventories/local", "multihost": "inventories/local-multihost"}
NETWORK = "morpheus-local"
CONTAINER_SECRETS = "/run/loadtest/secrets.json"
DEBUG_ACTIONS = ("ansible.builtin.debug", "debug")
STOP_SECONDS = 30


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


@dataclass
class Options:
    inventory: str | None = None  # None: the running local layout's
    users: int = 100
    spawn_rate: float = 10.0
    duration: float = 180.0
    capacity: bool = False
    steps: list[int] = field(default_factory=lambda: list(DEFAULT_STEPS))
    step_seconds: float = 60.0
    max_users: int | None = None  # continue the steps up to it
    network: str = NETWORK
    drain_seconds: float = 300.0
    ca_file: Path | None = None
    keep_comics: bool = False
    results_root: Path = RESULTS_ROOT


# --- the platform --------------------------------------------------------------------------


def running_layout() -> str | None:
    """The layout of the local platform that runs here (make up), if one does."""
    listed = docker.docker(
        "ps",
        "--filter",
        f"label={LOCAL_LABEL}=1",
        "--format",
        f'{{{{.Label "{LOCAL_LABEL}.layout"}}}}',
    )
    layouts = {line for line in listed.stdout.split() if line in LAYOUTS}
    return layouts.pop() if len(layouts) == 1 else None


def choose_inventory(given: str | None) -> str:
    if given:
        return given
    layout = running_layout()
    return LAYOUTS[layout or "single"]


def network_addresses(network: str) -> tuple[str, list[str]]:
    """(subnet, addresses in use) of a Docker network."""
    inspect = docker.docker("network", "inspect", network)
    if inspect.returncode != 0:
        raise LoadTestError(
            f"no platform answers: the Docker network {network} does not exist",
            "run `make up` (or `make up LAYOUT=multihost`), or name the platform's network "
            "with --network.",
        )
    data = json.loads(inspect.stdout)[0]
    configs = [
        c for c in data.get("IPAM", {}).get("Config") or [] if ":" not in c.get("Subnet", ":")
    ]
    if not configs:
        raise LoadTestError(
            f"the Docker network {network} has no IPv4 subnet",
            "run the load generator on the platform's IPv4 network (--network).",
        )
    used = [c["Gateway"] for c in configs if c.get("Gateway")]
    for container in (data.get("Containers") or {}).values():
        if container.get("IPv4Address"):
            used.append(container["IPv4Address"].split("/")[0])
    return configs[0]["Subnet"], used


def edge_answers(address: str, port: int = 443, timeout: float = 5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the playbook --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaybookRun:
    code: int
    output: str
    unreachable: bool  # a host could not be reached
    messages: list[str]  # what its debug tasks said


def playbook(inventory: str, extravars: dict, timeout: int = 900) -> PlaybookRun:
    """Run playbooks/loadtest.yml through ansible-runner."""
    tool = Path(sys.executable).parent / "ansible-playbook"
    try:
        import ansible_runner
    except ImportError:
        tool = Path("/nonexistent")
    if not tool.exists():
        raise LoadTestError(
            "ansible-runner and ansible-playbook are not beside this Python",
            "run scripts/loadtest with the project's .venv (make loadtest does; `make setup` "
            "makes it).",
        )
    # ansible-runner starts ansible-playbook by name: this .venv's, as make's PATH has it.
    path = os.environ.get("PATH", "")
    if str(tool.parent) not in path.split(os.pathsep):
        os.environ["PATH"] = f"{tool.parent}{os.pathsep}{path}"
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    # ansible-runner replaces the SIGINT and SIGTERM handlers with its own unless given a
    # cancel callback: Ctrl-C must still end the run, and its clean-up still happen.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tempfile.TemporaryDirectory(prefix="morpheus-loadtest-runner-") as private:
            result = ansible_runner.run(
                cancel_callback=lambda: False,
                private_data_dir=private,
                project_dir=str(ROOT),
                playbook=str(PLAYBOOK),
                inventory=str(ROOT / inventory),
                extravars=extravars,
                envvars=env,
                quiet=True,
                timeout=timeout,
            )
            output = result.stdout.read()
            events = list(result.events)
            stats = result.stats or {}
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    messages = [
        str(event["event_data"]["res"]["msg"])
        for event in events
        if event.get("event") == "runner_on_ok"
        and event.get("event_data", {}).get("task_action") in DEBUG_ACTIONS
    ]
    return PlaybookRun(result.rc, output, bool(stats.get("dark")), messages)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def make_keys(inventory: str, run: str, count: int, secrets: Path) -> dict:
    say(f"making {count} API keys (playbooks/loadtest.yml -i {inventory})")
    started = playbook(
        inventory,
        {
            "loadtest_action": "start",
            "loadtest_run": run,
            "loadtest_keys": count,
            "loadtest_output": str(secrets),
        },
    )
    missing = re.search(r"No such container: (\S+)", started.output)
    if missing:
        raise LoadTestError(
            f"no platform answers: the host {missing.group(1)} of {inventory} does not run",
            "run `make up` (`make up LAYOUT=multihost` for inventories/local-multihost); "
            "`make status` shows what runs.",
        )
    if started.unreachable:
        raise LoadTestError(
            f"no platform answers: the hosts of {inventory} are not reachable\n"
            f"{tail(started.output, 12)}",
            "run `make up` (`make up LAYOUT=multihost` for inventories/local-multihost), "
            "or check the inventory's connection.",
        )
    if started.code != 0 or not secrets.exists():
        raise LoadTestError(
            f"playbooks/loadtest.yml failed (exit {started.code}):\n{tail(started.output)}",
            "fix what the failed task says (the service must run on the api hosts), then rerun.",
        )
    secrets.chmod(0o600)
    return json.loads(secrets.read_text())


def remove_keys(inventory: str, run: str, comics: list[str]) -> None:
    say(f"revoking the run's API keys{' and deleting its comics' if comics else ''}")
    stopped = playbook(
        inventory,
        {"loadtest_action": "stop", "loadtest_run": run, "loadtest_comics": comics},
    )
    if stopped.code != 0:
        print(
            f"error: revoking the keys failed (exit {stopped.code}):\n{tail(stopped.output)}\n"
            f"next: revoke them by hand: docker exec <backend container> morpheus "
            f"revoke-api-key loadtest-{run}",
            file=sys.stderr,
        )
    for message in stopped.messages:
        say(message)


# --- the run -------------------------------------------------------------------------------


def run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def plan(options: Options, free: int) -> tuple[int, CapacityPlan | None, float]:
    """(users to make keys and addresses for, the capacity plan, the load's seconds)."""
    if not options.capacity:
        if options.users > free:
            raise LoadTestError(
                f"{options.users} users need {options.users} client addresses and the network "
                f"has {free} free",
                f"run at most {free} users (--users), or on a larger network (--network).",
            )
        return options.users, None, options.duration
    counts = step_counts(options.steps, free, options.max_users)
    capacity = CapacityPlan(counts=counts, step_seconds=options.step_seconds)
    previous, seconds = 0, 0.0
    for count in counts:
        seconds += (count - previous) / options.spawn_rate + capacity.settle_seconds
        seconds += capacity.step_seconds + 5
        previous = count
    return counts[-1], capacity, seconds + 30


def container_args(
    name: str,
    image: str,
    network: str,
    config: RunConfig,
    edge: str,
    results: Path,
    secrets: Path,
    ca_file: Path | None,
) -> list[str]:
    args = ["run", "--detach", "--name", name, "--label", f"{LABEL}={config.run}"]
    args += ["--network", network, "--ip", config.addresses[0], "--cap-add", "NET_ADMIN"]
    for host in config.names.values():
        args += ["--add-host", f"{host}:{edge}"]
    args += ["--volume", f"{LOADTEST_DIR}:/loadtest:ro", "--volume", f"{results}:/results"]
    args += ["--volume", f"{secrets}:{CONTAINER_SECRETS}:ro"]
    if ca_file is not None:
        args += ["--volume", f"{ca_file}:{CA_FILE}:ro"]
    return [*args, image]


def follow(name: str, log: Path) -> int:
    """Show the container's progress lines until it ends; its exit code."""
    with log.open("w") as out:
        child = subprocess.Popen(  # noqa: S603
            ["docker", "logs", "--follow", name],  # noqa: S607
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in child.stdout:
            out.write(line)
            out.flush()
            if line.startswith(("loadtest:", "error:", "next:")):
                print(line, end="", flush=True)
        child.wait()
    waited = docker.docker("wait", name)
    try:
        return int(waited.stdout.strip())
    except ValueError:
        return 1


def comic_ids(results: Path) -> list[str]:
    try:
        return [c["id"] for c in json.loads((results / "comics.json").read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def execute(options: Options) -> int:
    if not docker.answers():
        raise LoadTestError(
            "no Docker engine answers", "run `make up` (it starts the engine and the platform)."
        )
    inventory = choose_inventory(options.inventory)
    subnet, used = network_addresses(options.network)
    run = run_id()
    results = options.results_root / run
    results.mkdir(parents=True)
    say(f"load test {run} against {inventory}; results in {shown(results)}")
    secrets_dir = Path(tempfile.mkdtemp(prefix="morpheus-loadtest-"))
    secrets = secrets_dir / "secrets.json"
    name = f"morpheus-loadtest-{run.lower()}"
    keys_made = False
    try:
        free = len(free_addresses(subnet, used))
        users, capacity, seconds = plan(options, free)
        if capacity is not None:
            short = address_shortfall(
                options.steps, free, f"{options.network} ({subnet})", options.max_users
            )
            if short is not None:
                say(f"note: {short}")
        keys_made = True  # from here on, revoke: an interrupted start may have made some
        target = make_keys(inventory, run, users, secrets)
        edge = target["edge_addresses"][0]
        addresses = allocate(subnet, users, [*used, *target["host_addresses"]])
        if not edge_answers(edge):
            raise LoadTestError(
                f"no platform answers: nothing listens on the edge's {edge}:443",
                "run `make up` (or check nginx on the edge host), then rerun.",
            )
        ca_file, trusted = trust(options.ca_file, target, secrets_dir)
        image = ensure_image(LOADTEST_DIR, ROOT / "constraints.txt", say)
        config = RunConfig(
            run=run,
            users=users,
            spawn_rate=options.spawn_rate,
            duration=seconds,
            addresses=addresses,
            prefix=ipaddress.ip_network(subnet).prefixlen,
            names=target["names"],
            metrics_urls=[f"http://{endpoint}/metrics" for endpoint in target["api_metrics"]],
            ca_file=CA_FILE if ca_file is not None else None,
            drain_seconds=options.drain_seconds,
            capacity=capacity,
        )
        (results / "run.json").write_text(config.as_json())
        say(
            f"starting {name} on {options.network} ({addresses[0]}, {users} client addresses; "
            f"TLS verified with {trusted})"
        )
        started = docker.docker(
            *container_args(name, image, options.network, config, edge, results, secrets, ca_file)
        )
        if started.returncode != 0:
            raise LoadTestError(
                f"`docker run` of {name} failed: {started.stderr.strip()}",
                f"check that {addresses[0]} is free on {options.network} (docker network inspect "
                f"{options.network}) and that NET_ADMIN may be given, then rerun.",
            )
        code = follow(name, results / "generator.log")
    finally:
        if not any(results.iterdir()):  # nothing ran: no empty folder left behind
            results.rmdir()
        if docker.docker("container", "inspect", name).returncode == 0:
            # Stopped first, so that Locust writes down the comics made so far (to delete).
            docker.docker("stop", "--time", str(STOP_SECONDS), name, timeout=STOP_SECONDS + 30)
            docker.docker("rm", "--force", name)
        if keys_made:
            remove_keys(inventory, run, [] if options.keep_comics else comic_ids(results))
        shutil.rmtree(secrets_dir, ignore_errors=True)
    return finish(results, code)


def trust(given: Path | None, target: dict, secrets_dir: Path) -> tuple[Path | None, str]:
    """The CA file the load generator verifies the edge with, and how to name it: the
    one given, else the local platform's copy (.cache/local/ca.pem, make up writes it),
    else the inventory's (smoke_ca_bundle on the edge), else none: the system's store."""
    if given is not None:
        return given, shown(given)
    if LOCAL_CA.exists():
        return LOCAL_CA, shown(LOCAL_CA)
    pem = target.get("ca_pem") or ""
    if pem.strip():
        path = secrets_dir / "ca.pem"
        path.write_text(pem)
        path.chmod(0o644)
        return path, "the inventory's CA (smoke_ca_bundle)"
    return None, "the system's trust store"


def finish(results: Path, code: int) -> int:
    summary = results / "summary.txt"
    if code != 0 or not summary.exists():
        print(
            f"error: the load generator ended with exit code {code}; its output is in "
            f"{shown(results / 'generator.log')}\n"
            "next: read it, fix what it names, then rerun (keys and container are gone).",
            file=sys.stderr,
        )
        if not summary.exists():
            return 1
    say(
        f"report: {shown(results / 'report.md')}, {shown(results / 'locust.html')}, "
        f"{shown(results / 'chart.png')}"
    )
    print(summary.read_text().strip())
    return 0 if code == 0 else 1


def shown(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
