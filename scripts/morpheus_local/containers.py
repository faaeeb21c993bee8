"""The hosts' containers: systemd as PID 1 and a Docker engine inside, one per inventory host."""

from __future__ import annotations

import json
import subprocess
import time

from . import process
from .errors import LocalError
from .hosts import Host, Inventory
from .labels import LAYOUT_LABEL, SELECTOR
from .network import NETWORK
from .output import say
from .ports import check_ports_free

# Debian 12 with systemd and the common role's packages already installed
# (images/fleet/, built by `scripts/harness`): the role still runs and finds them there.
IMAGE = "morpheus/fleet:bookworm"
SHARED_STORAGE = "morpheus-local-storage"
SHARED_STORAGE_PATH = "/var/lib/morpheus/storage"
SHARED_STORAGE_GROUPS = ("api", "workers")
# What systemd as PID 1 and a Docker engine inside need; --privileged fails here.
CAPABILITIES = (
    "SYS_ADMIN",
    "NET_ADMIN",
    "NET_RAW",
    "SYS_PTRACE",
    "SYS_CHROOT",
    "MKNOD",
    "AUDIT_WRITE",
    "SETFCAP",
)
# A tmpfs mount inside the container, not a file path on this machine.
TMPFS = ("/run", "/run/lock", "/tmp:exec")  # noqa: S108
SYSTEMD_WAIT_SECONDS = 180


def publishes(inventory: Inventory, host: Host) -> bool:
    return host.name == inventory.first("edge").name


def volumes_of(host: Host, layout: str) -> list[tuple[str, str]]:
    """The named volumes a host's container mounts: (volume, path inside)."""
    volumes = [(f"{host.name}-docker", "/var/lib/docker")]
    if layout == "multihost" and host.groups & set(SHARED_STORAGE_GROUPS):
        volumes.append((SHARED_STORAGE, SHARED_STORAGE_PATH))
    return volumes


def run_args(inventory: Inventory, host: Host, layout: str, ports: dict[int, int]) -> list[str]:
    """The `docker run` arguments of one host's container."""
    args = ["run", "--detach", "--name", host.name, "--hostname", host.name]
    args += ["--label", SELECTOR, "--label", f"{LAYOUT_LABEL}={layout}"]
    args += ["--restart", "unless-stopped"]
    for capability in CAPABILITIES:
        args += ["--cap-add", capability]
    args += ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
    args += ["--cgroupns=host", "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    for path in TMPFS:
        args += ["--tmpfs", path]
    for volume, path in volumes_of(host, layout):
        args += ["--volume", f"{volume}:{path}"]
    args += ["--network", NETWORK, "--ip", host.address]
    if publishes(inventory, host):
        for container_port, host_port in ports.items():
            args += ["--publish", f"127.0.0.1:{host_port}:{container_port}"]
    args += [IMAGE, "/lib/systemd/systemd"]
    return args


def parse_ps(text: str) -> dict[str, tuple[str, str]]:
    """`docker ps --format '{{.Names}}\\t{{.State}}\\t<layout label>'` -> name: (state, layout)."""
    found = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, state, layout = ([*line.split("\t"), "", ""])[:3]
        found[name] = (state, layout)
    return found


def local_containers() -> dict[str, tuple[str, str]]:
    listing = process.docker(
        "ps",
        "--all",
        "--filter",
        f"label={SELECTOR}",
        "--format",
        f'{{{{.Names}}}}\t{{{{.State}}}}\t{{{{.Label "{LAYOUT_LABEL}"}}}}',
    )
    return parse_ps(listing.stdout)


def check_layout(existing: dict[str, tuple[str, str]], layout: str) -> None:
    """Refuse to mix layouts: containers of the other one must go first."""
    other = sorted(name for name, (_, found) in existing.items() if found != layout)
    if other:
        raise LocalError(
            f"the local platform already runs in another layout ({', '.join(other)})",
            f"run `make down` first, then `make up LAYOUT={layout}`.",
        )


def published_ports(name: str) -> dict[int, int]:
    inspect = process.docker(
        "container", "inspect", "--format", "{{json .HostConfig.PortBindings}}", name
    )
    bindings = json.loads(inspect.stdout or "null") or {}
    ports = {}
    for key, binds in bindings.items():
        if binds and key.endswith("/tcp"):
            ports[int(key.split("/")[0])] = int(binds[0]["HostPort"])
    return ports


def ensure_volume(name: str) -> None:
    created = process.docker("volume", "create", "--label", SELECTOR, name)
    if created.returncode != 0:
        raise LocalError(
            f"`docker volume create {name}` failed: {created.stderr.strip()}",
            "check `docker info` and the free disk space, then rerun `make up`.",
        )


def preflight(
    inventory: Inventory, layout: str, ports: dict[int, int]
) -> tuple[dict[str, tuple[str, str]], dict[int, int]]:
    """Check, before creating anything, what would make creating the containers fail.

    Returns the local containers found and the edge's host ports (those of an
    existing edge container, which must match the ones asked for).
    """
    existing = local_containers()
    check_layout(existing, layout)
    for host in inventory.hosts:
        if host.name in existing:
            continue
        found = process.docker("container", "inspect", "--format", "{{.Name}}", host.name)
        if found.returncode == 0:
            raise LocalError(
                f"a container named {host.name} exists that `make up` did not create",
                f"remove or rename it (`docker rm -f {host.name}`), then rerun `make up`.",
            )
    edge = inventory.first("edge")
    state = existing.get(edge.name, ("", ""))[0]
    if state:
        found = published_ports(edge.name)
        if found != ports:
            shown = ", ".join(f"127.0.0.1:{h}->{c}" for c, h in sorted(found.items()))
            raise LocalError(
                f"{edge.name} publishes {shown or 'no ports'}, not what "
                "MORPHEUS_LOCAL_HTTPS_PORT / MORPHEUS_LOCAL_HTTP_PORT ask for",
                "run `make down`, then `make up` with the ports you want.",
            )
    if state != "running":
        check_ports_free(ports)
    return existing, ports


def ensure_containers(
    inventory: Inventory, layout: str, ports: dict[int, int], existing: dict[str, tuple[str, str]]
) -> None:
    """Create every host's container, or start it when it exists but is stopped."""
    for host in inventory.hosts:
        state = existing.get(host.name, ("", ""))[0]
        if state == "running":
            say(f"{host.name} ({host.address}) is running: reusing it")
            continue
        if state:
            say(f"{host.name} ({host.address}) is {state}: starting it")
            started = process.docker("start", host.name)
            if started.returncode != 0:
                raise LocalError(
                    f"`docker start {host.name}` failed: {started.stderr.strip()}",
                    "run `make down` to start over, then `make up`.",
                )
            continue
        for volume, _ in volumes_of(host, layout):
            ensure_volume(volume)
        detail = host.address
        if publishes(inventory, host):
            detail += ", publishes " + ", ".join(f"127.0.0.1:{h}->{c}" for c, h in ports.items())
        say(f"creating {host.name} ({detail})")
        created = process.docker(*run_args(inventory, host, layout, ports))
        if created.returncode != 0:
            raise LocalError(
                f"`docker run` of {host.name} failed: {created.stderr.strip()}",
                f"check that {IMAGE} exists (`make harness`) and that {host.address} is free "
                f"on {NETWORK}; `make down` starts over.",
            )


def wait_for_systemd(name: str, timeout: float = SYSTEMD_WAIT_SECONDS) -> str:
    """Wait for systemd in a container to finish booting: running or degraded."""
    deadline = time.monotonic() + timeout
    state = "not answering"
    while time.monotonic() < deadline:
        left = max(1.0, deadline - time.monotonic())
        try:
            probe = process.docker(
                "exec", name, "systemctl", "is-system-running", "--wait", timeout=left
            )
            state = probe.stdout.strip() or probe.stderr.strip() or state
        except subprocess.TimeoutExpired:
            state = "still starting"
            break
        if state in {"running", "degraded"}:
            return state
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    failed = process.docker("exec", name, "systemctl", "--failed", "--no-pager", timeout=30)
    raise LocalError(
        f"systemd in {name} did not finish booting within {timeout:.0f}s ({state}).\n"
        f"systemctl --failed:\n{failed.stdout.strip() or failed.stderr.strip()}",
        f"look at `docker exec {name} journalctl -b --no-pager | tail -50`; "
        "`make down` then `make up` starts over.",
    )
