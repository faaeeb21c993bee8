"""The Docker network the local hosts share, at their inventory addresses."""

from __future__ import annotations

import json

from . import process
from .errors import LocalError
from .labels import SELECTOR
from .output import say

NETWORK = "morpheus-local"
SUBNET = "172.30.10.0/24"


def ensure_network() -> None:
    inspect = process.docker("network", "inspect", "--format", "{{json .IPAM.Config}}", NETWORK)
    if inspect.returncode == 0:
        subnets = [c.get("Subnet") for c in json.loads(inspect.stdout or "[]") or []]
        if SUBNET not in subnets:
            raise LocalError(
                f"a Docker network {NETWORK} exists with subnet {subnets}, not {SUBNET}",
                f"remove it (`docker network rm {NETWORK}`), then rerun `make up`.",
            )
        say(f"network {NETWORK} ({SUBNET}) exists")
        return
    say(f"creating network {NETWORK} ({SUBNET})")
    created = process.docker("network", "create", "--subnet", SUBNET, "--label", SELECTOR, NETWORK)
    if created.returncode != 0:
        raise LocalError(
            f"`docker network create {NETWORK}` failed: {created.stderr.strip()}",
            f"another Docker network may overlap {SUBNET}: `docker network ls`, remove it, rerun.",
        )
