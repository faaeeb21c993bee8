"""morpheus_loadtest.addresses: the users' client addresses on the platform's network."""

from __future__ import annotations

import ipaddress

import pytest
import yaml
from morpheus_loadtest.addresses import RESERVED_LOW, allocate, free_addresses, ip_batch
from morpheus_loadtest.capacity import DEFAULT_STEPS, address_shortfall, step_counts
from morpheus_loadtest.errors import LoadTestError
from morpheus_loadtest.runner import LAYOUTS, ROOT

# The local layouts' network (scripts/morpheus_local/network.py), and a /24 as it was.
LOCAL = "172.30.10.0/23"
SMALL = "172.30.10.0/24"
# The multi-host layout's hosts and the network's gateway.
USED = ["172.30.10.1", *(f"172.30.10.{n}" for n in range(11, 17))]


@pytest.mark.parametrize(
    ("subnet", "count", "used", "reserved", "expected"),
    [
        (LOCAL, 3, USED, RESERVED_LOW, ["172.30.11.254", "172.30.11.253", "172.30.11.252"]),
        (SMALL, 3, USED, RESERVED_LOW, ["172.30.10.254", "172.30.10.253", "172.30.10.252"]),
        # Addresses in use are skipped, with or without a prefix length.
        (SMALL, 2, ["172.30.10.254/24", "172.30.10.252"], 63, ["172.30.10.253", "172.30.10.251"]),
        # Every address above the reserved ones, and no more; a /23's run on through the
        # addresses ending in .255 and .0, which are hosts' there.
        (SMALL, 191, USED, RESERVED_LOW, [f"172.30.10.{n}" for n in range(254, 63, -1)]),
        (
            LOCAL,
            447,
            USED,
            RESERVED_LOW,
            [f"172.30.11.{n}" for n in range(254, -1, -1)]
            + [f"172.30.10.{n}" for n in range(255, 63, -1)],
        ),
        ("10.0.0.0/29", 2, [], 0, ["10.0.0.6", "10.0.0.5"]),
        ("10.1.0.0/22", 2, [], 63, ["10.1.3.254", "10.1.3.253"]),
    ],
)
def test_allocate(subnet, count, used, reserved, expected):
    assert allocate(subnet, count, used, reserved) == expected


def test_the_first_address_stays_the_same_whatever_the_count():
    assert allocate(LOCAL, 1, USED)[0] == allocate(LOCAL, 400, USED)[0] == "172.30.11.254"


def test_a_local_network_has_room_for_400_users():
    assert len(free_addresses(LOCAL, USED)) == 447
    addresses = allocate(LOCAL, 400, USED)
    assert len(set(addresses)) == 400
    network = ipaddress.ip_network(LOCAL)
    assert all(ipaddress.ip_address(a) in network for a in addresses)
    # None among the hosts, the gateway or the first 63, where Docker hands out addresses.
    assert min(ipaddress.ip_address(a) for a in addresses) > network[RESERVED_LOW]
    # The default capacity search runs every step, and says nothing of a shortfall.
    free = len(free_addresses(LOCAL, USED))
    assert step_counts(DEFAULT_STEPS, free) == list(DEFAULT_STEPS)
    assert address_shortfall(DEFAULT_STEPS, free, LOCAL) is None


def private_addresses(node: object) -> list[str]:
    """Every morpheus_private_address in a hosts.yml."""
    if isinstance(node, dict):
        own = node.get("morpheus_private_address")
        found = [str(own)] if own is not None else []
        return found + [a for value in node.values() for a in private_addresses(value)]
    return []


@pytest.mark.parametrize("inventory", sorted(LAYOUTS.values()))
def test_each_local_layouts_network_has_room_for_400_users_beside_its_hosts(inventory):
    hosts = yaml.safe_load((ROOT / inventory / "hosts.yml").read_text())
    values = yaml.safe_load((ROOT / inventory / "group_vars" / "all" / "main.yml").read_text())
    (network,) = values["morpheus_private_networks"]
    used = [str(ipaddress.ip_network(network)[1]), *private_addresses(hosts)]  # the gateway
    assert len(used) > 1
    addresses = allocate(network, 400, used)
    assert not set(addresses) & set(used)


@pytest.mark.parametrize(
    ("subnet", "count", "used", "message"),
    [
        (SMALL, 192, USED, r"192 users need 192 client addresses, and 172.30.10.0/24 has 191 free"),
        (LOCAL, 448, USED, r"448 users need 448 client addresses, and 172.30.10.0/23 has 447 free"),
        (LOCAL, 0, USED, "0 users need no addresses"),
        ("172.30.10.0/33", 1, [], "is not a network in CIDR notation"),
        ("172.30.10.1/24", 1, [], "is not a network in CIDR notation"),
        ("fd00::/64", 1, [], "is an IPv6 network"),
        (LOCAL, 1, ["edge"], "address in use 'edge' is not an IPv4 address"),
    ],
)
def test_allocate_refuses(subnet, count, used, message):
    with pytest.raises(LoadTestError, match=message):
        allocate(subnet, count, used)


def test_a_refusal_says_how_many_users_fit():
    with pytest.raises(LoadTestError) as refused:
        allocate(SMALL, 300, USED)
    assert "run at most 191 users" in refused.value.hint


def test_ip_batch_adds_every_address_but_the_containers_own():
    batch = ip_batch(["172.30.10.254", "172.30.10.253", "172.30.10.252"], 24, "eth0")
    assert batch == (
        "address add 172.30.10.253/24 dev eth0\naddress add 172.30.10.252/24 dev eth0\n"
    )
    assert ip_batch(["172.30.10.254"], 24, "eth0") == ""
    assert ip_batch(["a", "b"], 24, "eth0", "del") == "address del b/24 dev eth0\n"


@pytest.mark.parametrize(
    ("prefix", "action", "message"),
    [(24, "flush", "unknown action 'flush'"), (0, "add", "0 is no IPv4 prefix"), (33, "add", "33")],
)
def test_ip_batch_refuses(prefix, action, message):
    with pytest.raises(LoadTestError, match=message):
        ip_batch(["a", "b"], prefix, "eth0", action)
