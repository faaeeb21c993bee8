"""The hosts of a layout's inventory, read with ansible-inventory: names, addresses, groups."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

from . import process
from .errors import LocalError
from .network import NETWORK, SUBNET
from .paths import BIN, ROOT

LAYOUTS = {"single": "inventories/local", "multihost": "inventories/local-multihost"}


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    groups: frozenset[str]


@dataclass
class Inventory:
    path: str
    hosts: list[Host]
    groups: dict[str, list[str]] = field(default_factory=dict)

    def first(self, group: str) -> Host:
        names = self.groups.get(group, [])
        if not names:
            raise LocalError(
                f"{self.path} has no host in group {group}",
                f"add one to {self.path}/hosts.yml.",
            )
        return self.host(names[0])

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)


def ansible_inventory(*args: str) -> dict:
    tool = BIN / "ansible-inventory"
    if not tool.exists():
        raise LocalError(f"{tool.relative_to(ROOT)} is missing", "run `make setup` first.")
    result = process.run(
        [str(tool), *args], cwd=ROOT, env=process.ansible_env(), capture_output=True
    )
    if result.returncode != 0:
        raise LocalError(
            f"`ansible-inventory {' '.join(args)}` failed:\n{result.stderr.strip()[-2000:]}",
            "fix the inventory it names, then rerun.",
        )
    return json.loads(result.stdout)


def group_members(listing: dict, group: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """Hosts of a group of `ansible-inventory --list`, its children's included, in order."""
    if group in seen:
        return []
    entry = listing.get(group, {})
    members = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        members += group_members(listing, child, seen | {group})
    return list(dict.fromkeys(members))


def parse_inventory(path: str, listing: dict) -> Inventory:
    """Hosts, their addresses and groups from `ansible-inventory --list` output."""
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    groups = {
        name: group_members(listing, name) for name in listing if name not in {"_meta", "all"}
    }
    subnet = ipaddress.ip_network(SUBNET)
    hosts = []
    for name in group_members(listing, "all") or list(hostvars):
        address = hostvars.get(name, {}).get("morpheus_private_address")
        if not address:
            raise LocalError(
                f"host {name} in {path} has no morpheus_private_address",
                f"give it an address in {SUBNET} in {path}/hosts.yml.",
            )
        try:
            inside = ipaddress.ip_address(address) in subnet
        except ValueError:
            inside = False
        if not inside:
            raise LocalError(
                f"host {name} in {path}: morpheus_private_address {address} is not in {SUBNET}",
                f"give it an address in {SUBNET} (the {NETWORK} network) in {path}/hosts.yml.",
            )
        member_of = frozenset(g for g, members in groups.items() if name in members)
        hosts.append(Host(name, address, member_of))
    if not hosts:
        raise LocalError(f"{path} has no hosts", f"check {path}/hosts.yml parses.")
    used = [h.address for h in hosts]
    if len(set(used)) != len(used):
        raise LocalError(
            f"two hosts of {path} share one morpheus_private_address",
            f"give each host its own address in {path}/hosts.yml.",
        )
    return Inventory(path, hosts, {g: m for g, m in groups.items() if m})


def load_inventory(layout: str) -> Inventory:
    path = LAYOUTS[layout]
    return parse_inventory(path, ansible_inventory("-i", path, "--list"))


def host_vars(inventory: Inventory, host: Host) -> dict:
    return ansible_inventory("-i", inventory.path, "--host", host.name)
