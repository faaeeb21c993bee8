"""Checks of a whole inventory, run by playbooks/preflight.yml before any host is touched."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleError, AnsibleFilterError

DOCUMENTATION = r"""
filters:
  placeholder_report:
    description: >-
      Walk the variables of the given hosts (hostvars) and list every value that still
      holds the placeholder marker, one line per variable and file, with the file and
      line it comes from and the hosts that see it. A variable whose template needs a
      missing vault_ secret is listed too.
    positional: hosts, marker
    options:
      _input: {description: hostvars., type: dict, required: true}
      hosts: {description: The hosts to check (groups['all'])., type: list, required: true}
      marker: {description: The placeholder text., type: str, default: CHANGE_ME}
  inventory_problems:
    description: >-
      Sanity of the inventory's layout: every required group has a host, every host is
      in at least one known group, every host of the addressed groups has a private
      address variable that parses as a private IP address. Returns one line per problem.
    positional: groups, required, known, addressed, address_var, marker
"""

EXAMPLES = r"""
problems: "{{ hostvars | placeholder_report(groups['all']) }}"
layout: "{{ hostvars | inventory_problems(groups, ['api'], ['api', 'edge'], ['postgres']) }}"
"""

# Variables Ansible sets itself: never a user's placeholder, and some are large.
MAGIC = frozenset(
    {
        "ansible_facts",
        "ansible_config_file",
        "ansible_inventory_sources",
        "ansible_playbook_python",
        "ansible_version",
        "groups",
        "group_names",
        "hostvars",
        "omit",
        "playbook_dir",
        "role_names",
    }
)


def _origin(value: object) -> str | None:
    """'file:line' where a value was read, from ansible-core's data tags (2.19+)."""
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # older ansible-core: no origin tracking
        return None
    origin = Origin.get_tag(value)
    if origin is None or not origin.path:
        return None
    shown = _relative(os.path.realpath(origin.path))  # through the platform-defaults symlinks
    return f"{shown}:{origin.line_num}" if origin.line_num else shown


def _template_failure(value: object) -> str | None:
    """The error of a variable whose template failed (ansible-core 2.19 keeps it as a marker)."""
    if not type(value).__name__.endswith("ExceptionMarker"):
        return None
    try:
        error = value._as_exception()
    except Exception as exc:  # any failure still means a broken template
        error = exc
    return " ".join(str(getattr(error, "message", None) or error).split())


def _is_undefined(value: object) -> bool:
    return type(value).__name__ in ("UndefinedMarker", "AnsibleUndefined", "StrictUndefined")


def _walk(value: object, path: str, marker: str, found: list[tuple[str, object]]) -> None:
    if isinstance(value, str):
        if marker in value:
            found.append((path, value))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _walk(item, f"{path}.{key}", marker, found)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", marker, found)


def _relative(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _line_key(origin: str) -> tuple[str, int]:
    path, _, line = origin.rpartition(":")
    return (path, int(line)) if line.isdigit() else (origin, 0)


def placeholder_report(
    hostvars: Mapping, hosts: Iterable[str], marker: str = "CHANGE_ME"
) -> list[str]:
    """One line per placeholder to replace: where, which variable, which hosts see it.

    A value found in a variable as written (before templating) is reported at the file
    and line it was read from; variables that only reach it through a template
    (``x: "{{ y }}"``) are not reported again. A template that needs a missing
    ``vault_`` secret is reported by the secret's name.
    """
    if not marker:
        raise AnsibleFilterError("placeholder_report: the marker must not be empty")
    direct: dict[tuple[str, str, str], list[str]] = {}
    secrets: dict[str, dict] = {}
    broken: dict[tuple[str, str, str], list[str]] = {}
    for host in hosts:
        templated = hostvars[host]
        raw = hostvars.raw_get(host) if hasattr(hostvars, "raw_get") else templated
        names = [n for n in raw if n not in MAGIC and not n.startswith("inventory_")]
        direct_names: dict[str, bool] = {}
        for name in names:
            found: list[tuple[str, object]] = []
            _walk(raw[name], name, marker, found)
            direct_names[name] = bool(found)
            for path, leaf in found:
                origin = _origin(leaf) or "(file unknown: grep the inventory)"
                direct.setdefault((origin, path, repr(leaf)), []).append(host)
        for name in names:
            if direct_names.get(name):
                continue
            try:
                value = templated[name]
            except AnsibleError as error:
                origin = _origin(raw[name]) or "(file unknown: grep the inventory)"
                message = " ".join(str(error.message).split())
                broken.setdefault((origin, name, message), []).append(host)
                continue
            if (failure := _template_failure(value)) is not None:
                origin = _origin(raw[name]) or "(file unknown: grep the inventory)"
                broken.setdefault((origin, name, failure), []).append(host)
                continue
            if _is_undefined(value):
                reason = str(getattr(value, "_undefined_message", "") or "")
                if "vault_" in reason:
                    secret = reason.split("'")[1] if reason.count("'") >= 2 else reason
                    inventory = raw.get("inventory_dir") or "<inventory>"
                    entry = secrets.setdefault(
                        secret, {"users": set(), "hosts": [], "inventory": str(inventory)}
                    )
                    entry["users"].add(name)
                    if host not in entry["hosts"]:
                        entry["hosts"].append(host)

    every = list(hosts)

    def hosts_text(where: list[str]) -> str:
        if len(where) == len(every) > 1:
            return f"all {len(every)} hosts"
        return (
            "hosts: "
            + ", ".join(where[:4])
            + (f" and {len(where) - 4} more" if len(where) > 4 else "")
        )

    lines = []
    for (origin, path, shown), where in sorted(direct.items(), key=lambda i: _line_key(i[0][0])):
        lines.append(f"{origin}: {path} = {shown} ({hosts_text(where)})")
    for (origin, name, message), where in sorted(broken.items(), key=lambda i: _line_key(i[0][0])):
        lines.append(f"{origin}: {name} does not template: {message} ({hosts_text(where)})")
    for secret, entry in sorted(secrets.items()):
        vault = _relative(os.path.join(entry["inventory"], "group_vars", "all", "vault.yml"))
        lines.append(
            f"{vault}: {secret} is not defined, needed by {', '.join(sorted(entry['users']))} "
            f"(make vault.yml from vault.yml.example; {hosts_text(entry['hosts'])})"
        )
    return lines


def _groups_of(groups: Mapping, host: str) -> list[str]:
    return [
        name
        for name, members in groups.items()
        if name not in ("all", "ungrouped") and host in members
    ]


def inventory_problems(
    hostvars: Mapping,
    groups: Mapping,
    required: Iterable[str],
    known: Iterable[str],
    addressed: Iterable[str],
    address_var: str = "morpheus_private_address",
    marker: str = "CHANGE_ME",
) -> list[str]:
    problems = []
    all_hosts = list(groups.get("all", []))
    if not all_hosts:
        return [
            "the inventory has no hosts: did hosts.yml parse? (see the warnings above; "
            "ansible-inventory --list -i <inventory> shows what Ansible read)"
        ]
    for group in required:
        if not groups.get(group):
            problems.append(
                f"group '{group}' has no hosts: add one under "
                f"all.children.{group}.hosts in hosts.yml"
            )
    known = list(known)
    for host in all_hosts:
        if not set(_groups_of(groups, host)) & set(known):
            problems.append(
                f"host '{host}' is in none of the platform's groups ({', '.join(known)}): "
                "put it in one in hosts.yml, or remove it"
            )
    for group in addressed:
        for host in groups.get(group, []):
            value = hostvars[host].get(address_var)
            if value is None or _is_undefined(value) or value == "":
                problems.append(
                    f"host '{host}' (group {group}) has no {address_var}: set it in hosts.yml "
                    f"or host_vars/{host}.yml"
                )
                continue
            if isinstance(value, str) and marker in value:
                continue  # listed with the placeholders already
            try:
                address = ipaddress.ip_address(str(value).strip())
            except ValueError:
                problems.append(
                    f"host '{host}' (group {group}): {address_var} {value!r} is not an IP address"
                )
                continue
            if not address.is_private or address.is_loopback:
                problems.append(
                    f"host '{host}' (group {group}): {address_var} {value!r} is not a "
                    "private address (10/8, 172.16/12, 192.168/16, fc00::/7); "
                    "PostgreSQL and Redis listen on it"
                )
    return problems


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"placeholder_report": placeholder_report, "inventory_problems": inventory_problems}
