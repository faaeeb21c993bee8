"""The Docker network the local hosts share, at their inventory addresses."""

from __future__ import annotations

import json

from . import process
from .errors import LocalError
from .labels import SELECTOR
from .output import say

NETWORK = "morpheus-local"
# The hosts sit at 172.30.10.10 and up, Docker's gateway at 172.30.10.1; the load
# generator gives each simulated user an address of its own from the top down
# (loadtest/morpheus_loadtest/addresses.py): a /23 leaves it 447, a /24 left 191.
SUBNET = "172.30.10.0/23"


def ensure_network() -> None:
    inspect = process.docker("network", "inspect", "--format", "{{json .IPAM.Config}}", NETWORK)
    if inspect.returncode == 0:
        subnets = [c.get("Subnet") for c in json.loads(inspect.stdout or "[]") or []]
        if SUBNET not in subnets:
            raise LocalError(
                f"a Docker network {NETWORK} exists with subnet {subnets}, not {SUBNET}",
                f"remove it, then rerun `make up`: `make down` removes it with the local "
                f"containers and their volumes (one made before the network grew to {SUBNET} "
                f"has them attached); with nothing attached, `docker network rm {NETWORK}`.",
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
