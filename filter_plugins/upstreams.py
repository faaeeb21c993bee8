"""Filters that turn inventory hosts into validated nginx upstream blocks."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  upstream_members:
    description: >-
      Read each backend host's variables (C(nginx_backend_address), C(nginx_backend_port),
      C(nginx_backend_weight), C(nginx_backend_max_fails), C(nginx_backend_fail_timeout),
      C(nginx_backend_backup)) from a list of hostvars and return one member per host,
      with the defaults filled in. The address falls back to C(ansible_host), then to
      C(inventory_hostname). A host that runs several backends sets
      C(nginx_backend_ports), a list of ports: one member per port, in that order.
    positional: defaults, name
    options:
      _input:
        description: The hosts' variables (for example a group mapped through hostvars).
        type: list
        required: true
      defaults:
        description: Values for keys a host does not set (address, port, weight, ...).
        type: dict
      name: {description: Variable name quoted in error messages., type: str}
  upstream_servers:
    description: >-
      Validate a list of members (address, port, weight, max_fails, fail_timeout, backup)
      and return nginx C(server) lines, in the given order. Duplicates, a pool of backups
      only and an empty pool are refused.
    positional: name
  upstream_slots:
    description: >-
      For hosts that run their backends in slots (a blue and a green set of ports, one
      serving while the other takes the next release), the server lines of every slot of
      every host and the slot each host serves from. A host's slots come from
      C(nginx_backend_slots), a mapping of slot name to ports; a host without it has one
      slot, C(main), with the ports C(upstream_members) would give it. C(live) maps host
      names to their serving slot; a host it does not name serves from its first slot.
      The serving slots together must make a valid pool (no target twice, one active).
    positional: defaults, live, name
  upstream_live_slots:
    description: >-
      Which slot each backend host serves from, as C(upstream_slots) takes it: the
      host's C(nginx_backend_live_slot) when set, else the content of its record read
      with C(slurp) (C(records), the results of a loop over the host names), else
      nothing (the host's first slot).
    positional: records
  upstream_files:
    description: >-
      The files an edge needs for the pools C(upstream_slots) returns: one per host and
      slot (C(name), C(content)), and one link per host (C(name), C(target)) to the file
      of the slot it serves from, relative to the live/ folder.
  upstream_block:
    description: >-
      The lines inside an C(upstream) block: the validated server lines, then
      C(keepalive N;) when N is above zero.
    positional: keepalive, name
"""

EXAMPLES = r"""
# Every host of the inventory group "api" becomes a server of the pool.
lines: >-
  {{ groups['api'] | map('extract', hostvars) | upstream_members({'port': 8000})
     | upstream_block(32, 'nginx_upstream_group') }}
# ["server 10.0.0.5:8000 weight=1 max_fails=3 fail_timeout=10s;", "keepalive 32;"]
"""

SLOT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
HOST_KEYS = ("address", "port", "weight", "max_fails", "fail_timeout", "backup")
VIEW_KEYS = (
    "inventory_hostname",
    "ansible_host",
    "nginx_backend_ports",
    *(f"nginx_backend_{key}" for key in HOST_KEYS),
)
MEMBER_DEFAULTS = {"weight": 1, "max_fails": 3, "fail_timeout": "10s", "backup": False}
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
DURATION = re.compile(r"^[0-9]+(ms|s|m|h)?$")


def _int(value: object, name: str, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AnsibleFilterError(f"{name}: {what} {value!r} is not an integer")
    text = str(value).strip()
    if not text.isdigit():
        raise AnsibleFilterError(f"{name}: {what} {value!r} is not an integer")
    number = int(text)
    if number < low or (high is not None and number > high):
        bounds = f"{low}-{high}" if high is not None else f">= {low}"
        raise AnsibleFilterError(f"{name}: {what} {number} is out of range ({bounds})")
    return number


def _address(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AnsibleFilterError(f"{name}: address {value!r} is not an IP address or host name")
    text = value.strip()
    try:
        ip = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        if HOSTNAME.match(text):
            return text
        raise AnsibleFilterError(
            f"{name}: address {value!r} is not an IP address or host name"
        ) from None
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise AnsibleFilterError(f"{name}: backup {value!r} is not a boolean")


def _require_host_list(hosts: object, name: str) -> None:
    if isinstance(hosts, str | bytes | Mapping) or not isinstance(hosts, Iterable):
        raise AnsibleFilterError(
            f"{name}: expected a list of hosts' variables, got {type(hosts).__name__}"
        )


def upstream_members(
    hosts: Iterable[object] | None,
    defaults: Mapping[str, object] | None = None,
    name: str = "upstream",
) -> list[dict[str, object]]:
    if hosts is None:
        return []
    _require_host_list(hosts, name)
    defaults = dict(defaults or {})
    unknown = sorted(set(defaults) - set(HOST_KEYS))
    if unknown:
        raise AnsibleFilterError(f"{name}: unknown default key(s) {', '.join(unknown)}")
    members = []
    for host in hosts:
        if not isinstance(host, Mapping):
            raise AnsibleFilterError(f"{name}: {host!r} is not a host's variables")
        member: dict[str, object] = {**MEMBER_DEFAULTS, **defaults}
        fallback = host.get("ansible_host") or host.get("inventory_hostname")
        if fallback is not None:
            member.setdefault("address", fallback)
        for key in HOST_KEYS:
            value = host.get(f"nginx_backend_{key}")
            if value is not None:
                member[key] = value
        label = host.get("inventory_hostname", member.get("address"))
        if "address" not in member:
            raise AnsibleFilterError(f"{name}: host {label} has no address")
        ports = host.get("nginx_backend_ports")
        if ports is not None:
            if isinstance(ports, str | bytes | Mapping) or not isinstance(ports, Iterable):
                raise AnsibleFilterError(
                    f"{name}: host {label}: nginx_backend_ports must be a list of ports,"
                    f" got {ports!r}"
                )
            ports = list(ports)
            if not ports:
                raise AnsibleFilterError(
                    f"{name}: host {label}: nginx_backend_ports is empty (list one port"
                    " at least, or remove the host from the group)"
                )
            members.extend({**member, "port": port} for port in ports)
            continue
        if "port" not in member:
            raise AnsibleFilterError(
                f"{name}: host {label} has no nginx_backend_port and no default port"
            )
        members.append(member)
    return members


def upstream_servers(members: Iterable[object] | None, name: str = "upstream") -> list[str]:
    if (
        members is None
        or isinstance(members, str | bytes | Mapping)
        or not isinstance(members, Iterable)
    ):
        raise AnsibleFilterError(
            f"{name}: expected a list of upstream members, got {type(members).__name__}"
        )
    lines: list[str] = []
    seen: set[str] = set()
    active = 0
    for member in members:
        if not isinstance(member, Mapping):
            raise AnsibleFilterError(f"{name}: {member!r} is not an upstream member")
        unknown = sorted(set(member) - set(HOST_KEYS))
        if unknown:
            raise AnsibleFilterError(
                f"{name}: unknown key(s) {', '.join(unknown)} in {dict(member)!r}"
            )
        if "address" not in member or "port" not in member:
            raise AnsibleFilterError(f"{name}: {dict(member)!r} needs an address and a port")
        merged = {**MEMBER_DEFAULTS, **member}
        address = _address(merged["address"], name)
        port = _int(merged["port"], name, "port", 1, 65535)
        weight = _int(merged["weight"], name, "weight", 1, 1000)
        max_fails = _int(merged["max_fails"], name, "max_fails", 0, 1000)
        timeout = str(merged["fail_timeout"]).strip()
        if not DURATION.match(timeout):
            raise AnsibleFilterError(
                f"{name}: fail_timeout {merged['fail_timeout']!r} is not a duration"
                " (for example 10s)"
            )
        backup = _bool(merged["backup"], name)
        target = f"{address}:{port}"
        if target in seen:
            raise AnsibleFilterError(f"{name}: {target} is listed twice")
        seen.add(target)
        line = f"server {target} weight={weight} max_fails={max_fails} fail_timeout={timeout}"
        if backup:
            line += " backup"
        else:
            active += 1
        lines.append(line + ";")
    if not lines:
        raise AnsibleFilterError(f"{name}: the upstream pool is empty (no backend host)")
    if active == 0:
        raise AnsibleFilterError(f"{name}: every server is a backup; at least one must not be")
    return lines


def upstream_slots(
    hosts: Iterable[object] | None,
    defaults: Mapping[str, object] | None = None,
    live: Mapping[str, object] | None = None,
    name: str = "upstream",
) -> list[dict[str, object]]:
    if hosts is None:
        return []
    _require_host_list(hosts, name)
    if live is not None and not isinstance(live, Mapping):
        raise AnsibleFilterError(f"{name}: live must map host names to slots, got {live!r}")
    live = dict(live or {})
    result: list[dict[str, object]] = []
    serving: list[Mapping[str, object]] = []
    for host in hosts:
        if not isinstance(host, Mapping):
            raise AnsibleFilterError(f"{name}: {host!r} is not a host's variables")
        label = str(host.get("inventory_hostname", ""))
        if not label:
            raise AnsibleFilterError(f"{name}: a host's variables lack inventory_hostname")
        slots = host.get("nginx_backend_slots")
        if slots is None:
            slots = {"main": None}
        if not isinstance(slots, Mapping) or not slots:
            raise AnsibleFilterError(
                f"{name}: host {label}: nginx_backend_slots must map slot names to lists"
                f" of ports (for example {{blue: [8000], green: [8100]}}), got {slots!r}"
            )
        files: dict[str, list[str]] = {}
        members_of: dict[str, list[dict[str, object]]] = {}
        for slot, ports in slots.items():
            if not isinstance(slot, str) or not SLOT_NAME.match(slot):
                raise AnsibleFilterError(
                    f"{name}: host {label}: slot name {slot!r} must be lowercase letters,"
                    " digits, '-' or '_', starting with a letter"
                )
            # Only the keys upstream_members reads: a host's variables are templated
            # when read, and most of them are none of this filter's business.
            view = {key: host.get(key) for key in VIEW_KEYS if host.get(key) is not None}
            if ports is not None:
                view["nginx_backend_ports"] = ports
            members = upstream_members([view], defaults, name)
            members_of[slot] = members
            files[slot] = upstream_servers(members, f"{name}: host {label}, slot {slot}")
        chosen = live.get(label)
        if chosen is None or chosen == "":
            chosen = next(iter(files))
        if chosen not in files:
            raise AnsibleFilterError(
                f"{name}: host {label} serves from slot {chosen!r}, which it does not have"
                f" (its slots: {', '.join(files)})"
            )
        serving.extend(members_of[chosen])
        result.append({"host": label, "live": chosen, "slots": files})
    if result:
        upstream_servers(serving, name)
    return result


def upstream_live_slots(
    hosts: Iterable[object] | None, records: Iterable[object] | None = None
) -> dict[str, str]:
    read: dict[str, str] = {}
    for record in records or []:
        if isinstance(record, Mapping) and record.get("content") and record.get("item"):
            try:
                text = base64.b64decode(str(record["content"])).decode().strip()
            except (ValueError, UnicodeDecodeError):
                continue
            if text:
                read[str(record["item"])] = text
    slots: dict[str, str] = {}
    for host in hosts or []:
        if not isinstance(host, Mapping) or not host.get("inventory_hostname"):
            continue
        label = str(host["inventory_hostname"])
        chosen = str(host.get("nginx_backend_live_slot") or "").strip() or read.get(label, "")
        if chosen:
            slots[label] = chosen
    return slots


def upstream_files(pools: Iterable[object] | None) -> dict[str, list[dict[str, str]]]:
    files: list[dict[str, str]] = []
    links: list[dict[str, str]] = []
    for pool in pools or []:
        if not isinstance(pool, Mapping) or not {"host", "live", "slots"} <= set(pool):
            raise AnsibleFilterError(f"upstream_files: {pool!r} is not a pool of upstream_slots")
        host = pool["host"]
        for slot, lines in pool["slots"].items():
            body = "".join(f"{line}\n" for line in lines)
            files.append(
                {"name": f"{host}.{slot}.conf", "content": f"# {host}, slot {slot}\n{body}"}
            )
        links.append({"name": f"{host}.conf", "target": f"../{host}.{pool['live']}.conf"})
    return {"files": files, "links": links}


def upstream_block(
    members: Iterable[object] | None, keepalive: object = 0, name: str = "upstream"
) -> list[str]:
    lines = upstream_servers(members, name)
    connections = _int(keepalive, name, "keepalive", 0, 10000)
    if connections:
        lines.append(f"keepalive {connections};")
    return lines


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "upstream_members": upstream_members,
            "upstream_servers": upstream_servers,
            "upstream_block": upstream_block,
            "upstream_slots": upstream_slots,
            "upstream_files": upstream_files,
            "upstream_live_slots": upstream_live_slots,
        }
