"""The load generator's client addresses: one per simulated user, on the platform's network.

nginx and the service count their limits per client address, so a run in which every
user came from one address would measure the limits, not the platform. The load
generator's container joins the platform's Docker network at one address and adds the
others to its interface; each user binds its connections to its own.

Docker hands out a network's addresses from the bottom of its subnet, and the local
inventories put their hosts there (172.30.10.10-16), so the addresses are taken from the
top down, past every address in use, and never among the subnet's first
:data:`RESERVED_LOW` host addresses: the local network, 172.30.10.0/23, leaves 447.
Nothing here talks to Docker: the caller passes the addresses in use (`docker network
inspect`, the inventory's hosts).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .errors import LoadTestError

# The first host addresses of a subnet stay free for Docker's own allocations and for
# the inventory's hosts (172.30.10.1-63 on the local network).
RESERVED_LOW = 63


def _network(subnet: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(subnet, strict=True)
    except ValueError as error:
        raise LoadTestError(
            f"{subnet!r} is not a network in CIDR notation ({error})",
            "give the platform's network as address/prefix, e.g. 172.30.10.0/23.",
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise LoadTestError(
            f"{subnet} is an IPv6 network; the load generator adds IPv4 addresses only",
            "run it on the platform's IPv4 network.",
        )
    return network


def _addresses(values: Iterable[str], what: str) -> set[ipaddress.IPv4Address]:
    found = set()
    for value in values:
        try:
            found.add(ipaddress.IPv4Address(value.split("/")[0]))
        except ValueError:
            raise LoadTestError(
                f"{what} {value!r} is not an IPv4 address",
                "check the inventory's morpheus_private_address values.",
            ) from None
    return found


def free_addresses(subnet: str, used: Iterable[str], reserved_low: int = RESERVED_LOW) -> list[str]:
    """Every address of `subnet` the load generator may take, highest first."""
    network = _network(subnet)
    if reserved_low < 0:
        raise LoadTestError(f"reserved_low is {reserved_low}", "give 0 or more.")
    taken = _addresses(used, "address in use")
    hosts = list(network.hosts())[reserved_low:]
    return [str(address) for address in reversed(hosts) if address not in taken]


def allocate(
    subnet: str, count: int, used: Iterable[str], reserved_low: int = RESERVED_LOW
) -> list[str]:
    """`count` free addresses of `subnet`, highest first. The first is the container's
    own (`docker run --ip`), so runs of any size keep the same one, and Docker the same
    MAC address for it; user N takes the Nth."""
    if count < 1:
        raise LoadTestError(f"{count} users need no addresses", "run at least 1 user.")
    free = free_addresses(subnet, used, reserved_low)
    if len(free) < count:
        raise LoadTestError(
            f"{count} users need {count} client addresses, and {subnet} has {len(free)} free "
            f"(above its first {reserved_low} host addresses, none in use)",
            f"run at most {len(free)} users (--users), or the load generator on a larger "
            "network (--network).",
        )
    return free[:count]


def ip_batch(addresses: list[str], prefix: int, device: str, action: str = "add") -> str:
    """`ip -batch -` input that adds (or deletes) every address but the first, which the
    interface already holds."""
    if action not in ("add", "del"):
        raise LoadTestError(f"unknown action {action!r}", "use add or del.")
    if not 0 < prefix <= 32:
        raise LoadTestError(f"{prefix} is no IPv4 prefix length", "give 1 to 32.")
    return "".join(f"address {action} {a}/{prefix} dev {device}\n" for a in addresses[1:])
