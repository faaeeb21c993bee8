"""Filters that check addresses and turn firewall variables into validated nftables rules."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  port_list:
    description: >-
      Validate a list of ports (integers, numeric strings or "low-high" ranges) and
      return it sorted, without duplicates, as nftables set elements (strings).
    positional: name
    options:
      _input: {description: The ports., type: list, required: true}
      name: {description: Variable name quoted in error messages., type: str}
  cidr_list:
    description: >-
      Validate a list of networks in CIDR notation and split it by family:
      C({"ipv4": [...], "ipv6": [...]}). A network with host bits set is refused.
    positional: name
  address_list:
    description: >-
      Validate a list of IP addresses (IPv4 or IPv6, no prefix length) and return them
      in their canonical form, in the order given.
    positional: name
  nft_accept_rules:
    description: >-
      nftables rule lines that accept the given ports for a protocol, from anywhere or,
      when sources are given, from those networks only.
    positional: proto, sources, name
"""

EXAMPLES = r"""
# "tcp dport { 22, 443 } accept"
rules: "{{ [22, 443] | nft_accept_rules('tcp') }}"
# "ip saddr { 10.10.0.0/16 } tcp dport { 5432, 6379 } accept"
internal: "{{ [5432, 6379] | nft_accept_rules('tcp', ['10.10.0.0/16']) }}"
"""

PROTOCOLS = ("tcp", "udp")


def _port(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AnsibleFilterError(f"{name}: {value!r} is not a port number")
    text = str(value).strip()
    if not text.isdigit():
        raise AnsibleFilterError(f"{name}: {value!r} is not a port number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise AnsibleFilterError(f"{name}: port {port} is out of range (1-65535)")
    return port


def _port_item(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, str) and "-" in value:
        low_text, _, high_text = value.partition("-")
        low, high = _port(low_text, name), _port(high_text, name)
        if low >= high:
            raise AnsibleFilterError(f"{name}: range {value!r} must go from low to high")
        return low, high
    port = _port(value, name)
    return port, port


def port_list(ports: Iterable[object] | None, name: str = "ports") -> list[str]:
    if ports is None:
        return []
    if isinstance(ports, str | bytes | dict) or not isinstance(ports, Iterable):
        raise AnsibleFilterError(f"{name}: expected a list of ports, got {type(ports).__name__}")
    items = sorted({_port_item(item, name) for item in ports})
    return [str(low) if low == high else f"{low}-{high}" for low, high in items]


def cidr_list(networks: Iterable[object] | None, name: str = "networks") -> dict[str, list[str]]:
    if networks is None:
        return {"ipv4": [], "ipv6": []}
    if isinstance(networks, str | bytes | dict) or not isinstance(networks, Iterable):
        raise AnsibleFilterError(
            f"{name}: expected a list of networks in CIDR notation, got {type(networks).__name__}"
        )
    parsed: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for item in networks:
        if not isinstance(item, str):
            raise AnsibleFilterError(f"{name}: {item!r} is not a network in CIDR notation")
        try:
            parsed.add(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as error:
            # `from None`: Ansible appends a chained cause to the message.
            if "host bits set" in str(error):
                wanted = ipaddress.ip_network(item.strip(), strict=False)
                raise AnsibleFilterError(
                    f"{name}: {item!r} has host bits set; did you mean {wanted}?"
                ) from None
            raise AnsibleFilterError(
                f"{name}: {item!r} is not a network in CIDR notation (for example 10.0.0.0/16)"
            ) from None
    return {
        "ipv4": [str(n) for n in sorted(n for n in parsed if n.version == 4)],
        "ipv6": [str(n) for n in sorted(n for n in parsed if n.version == 6)],
    }


def address_list(addresses: Iterable[object] | None, name: str = "addresses") -> list[str]:
    if addresses is None:
        return []
    if isinstance(addresses, str | bytes | dict) or not isinstance(addresses, Iterable):
        raise AnsibleFilterError(
            f"{name}: expected a list of IP addresses, got {type(addresses).__name__}"
        )
    parsed = []
    for item in addresses:
        try:
            parsed.append(str(ipaddress.ip_address(str(item).strip())))
        except ValueError:
            raise AnsibleFilterError(
                f"{name}: {item!r} is not an IP address (for example 10.0.0.11)"
            ) from None
    return parsed


def nft_accept_rules(
    ports: Iterable[object] | None,
    proto: str,
    sources: Iterable[object] | None = None,
    name: str = "ports",
) -> list[str]:
    if proto not in PROTOCOLS:
        raise AnsibleFilterError(f"{name}: protocol must be one of {', '.join(PROTOCOLS)}")
    elements = port_list(ports, name)
    if not elements:
        return []
    port_set = "{ " + ", ".join(elements) + " }"
    if sources is None:
        return [f"{proto} dport {port_set} accept"]
    families = cidr_list(sources, name)
    rules = []
    for family, keyword in (("ipv4", "ip"), ("ipv6", "ip6")):
        if families[family]:
            networks = "{ " + ", ".join(families[family]) + " }"
            rules.append(f"{keyword} saddr {networks} {proto} dport {port_set} accept")
    return rules


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "port_list": port_list,
            "cidr_list": cidr_list,
            "address_list": address_list,
            "nft_accept_rules": nft_accept_rules,
        }
