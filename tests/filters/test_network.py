"""Unit tests of filter_plugins/network.py."""

import re

import pytest
from ansible.errors import AnsibleFilterError
from network import FilterModule, address_list, cidr_list, nft_accept_rules, port_list


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([], []),
        (None, []),
        ([22], ["22"]),
        ([443, 80, "80", 22], ["22", "80", "443"]),
        (["8000-8010", 9000], ["8000-8010", "9000"]),
        ([" 5432 "], ["5432"]),
        ([1, 65535], ["1", "65535"]),
    ],
)
def test_port_list_normalises(ports, expected):
    assert port_list(ports, "p") == expected


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([0], "p: port 0 is out of range (1-65535)"),
        ([70000], "p: port 70000 is out of range (1-65535)"),
        (["http"], "p: 'http' is not a port number"),
        ([True], "p: True is not a port number"),
        ([-1], "p: -1 is not a port number"),
        (["9000-8000"], "p: range '9000-8000' must go from low to high"),
        (["1-70000"], "p: port 70000 is out of range (1-65535)"),
        ("22", "p: expected a list of ports, got str"),
        ({"a": 1}, "p: expected a list of ports, got dict"),
    ],
)
def test_port_list_refuses(ports, message):
    with pytest.raises(AnsibleFilterError) as error:
        port_list(ports, "p")
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("networks", "expected"),
    [
        ([], {"ipv4": [], "ipv6": []}),
        (["10.0.0.0/8"], {"ipv4": ["10.0.0.0/8"], "ipv6": []}),
        (
            ["fd00::/8", "192.168.0.0/16", "10.1.0.0/16", "10.1.0.0/16"],
            {"ipv4": ["10.1.0.0/16", "192.168.0.0/16"], "ipv6": ["fd00::/8"]},
        ),
        (["10.0.0.1/32"], {"ipv4": ["10.0.0.1/32"], "ipv6": []}),
    ],
)
def test_cidr_list_splits_by_family(networks, expected):
    assert cidr_list(networks, "n") == expected


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        (["10.0.0.5/24"], "n: '10.0.0.5/24' has host bits set; did you mean 10.0.0.0/24?"),
        (
            ["10.0.0.0/33"],
            "n: '10.0.0.0/33' is not a network in CIDR notation (for example 10.0.0.0/16)",
        ),
        (
            ["not-a-net"],
            "n: 'not-a-net' is not a network in CIDR notation (for example 10.0.0.0/16)",
        ),
        ([10], "n: 10 is not a network in CIDR notation"),
        ("10.0.0.0/8", "n: expected a list of networks in CIDR notation, got str"),
    ],
)
def test_cidr_list_refuses(networks, message):
    with pytest.raises(AnsibleFilterError) as error:
        cidr_list(networks, "n")
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (([22, 443], "tcp"), ["tcp dport { 22, 443 } accept"]),
        (([], "tcp"), []),
        (([53], "udp"), ["udp dport { 53 } accept"]),
        (([5432], "tcp", []), []),
        (
            ([6379, 5432], "tcp", ["10.10.0.0/16", "fd00:10::/64"]),
            [
                "ip saddr { 10.10.0.0/16 } tcp dport { 5432, 6379 } accept",
                "ip6 saddr { fd00:10::/64 } tcp dport { 5432, 6379 } accept",
            ],
        ),
    ],
)
def test_nft_accept_rules(args, expected):
    assert nft_accept_rules(*args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([22], "icmp"), "ports: protocol must be one of tcp, udp"),
        (([99999], "tcp"), "ports: port 99999 is out of range (1-65535)"),
        (
            ([22], "tcp", ["bad"]),
            "ports: 'bad' is not a network in CIDR notation (for example 10.0.0.0/16)",
        ),
    ],
)
def test_nft_accept_rules_refuses(args, message):
    with pytest.raises(AnsibleFilterError) as error:
        nft_accept_rules(*args)
    assert str(error.value) == message


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "port_list",
        "cidr_list",
        "address_list",
        "nft_accept_rules",
    }


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (None, []),
        ([], []),
        (["10.0.0.11", " 172.30.10.11"], ["10.0.0.11", "172.30.10.11"]),
        (["2001:DB8::0:1"], ["2001:db8::1"]),
    ],
)
def test_address_list_normalises(addresses, expected):
    assert address_list(addresses, "a") == expected


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        ("10.0.0.1", "a: expected a list of IP addresses, got str"),
        ({"x": "10.0.0.1"}, "a: expected a list of IP addresses, got dict"),
        (["edge-1"], "a: 'edge-1' is not an IP address"),
        (["10.0.0.0/24"], "a: '10.0.0.0/24' is not an IP address"),
        (["10.0.0.256"], "a: '10.0.0.256' is not an IP address"),
    ],
)
def test_address_list_refuses(addresses, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        address_list(addresses, "a")
