"""Filters that size PostgreSQL's memory and connection settings from the host."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  pg_memory_kb:
    description: >-
      Parse a memory size as PostgreSQL writes it ("64kB", "512MB", "4GB", "1TB", with
      an optional space; units are case-insensitive) and return it in kilobytes. A bare
      integer (or a string of digits) is a number of megabytes, like Ansible's
      memtotal_mb fact. Anything else is refused with a message naming the variable.
    positional: name
    options:
      _input: {description: The size., type: raw, required: true}
      name: {description: Variable name quoted in error messages., type: str}
  pg_memory:
    description: Like pg_memory_kb, but return the size as a PostgreSQL setting ("512MB").
    positional: name
  pg_tune:
    description: >-
      Settings for a PostgreSQL server that owns the host, from its memory (MB) and
      cores and the number of server connections the pooler opens: max_connections,
      shared_buffers (RAM/4), effective_cache_size (RAM*3/4), maintenance_work_mem
      (RAM/16, at most 2GB), work_mem ((RAM - shared_buffers) / (3 * max_connections)
      / parallel workers per gather, 1MB to 256MB) and the parallel worker counts.
      Any key of C(overrides) with a value that is not null or empty replaces the
      computed one (memory sizes are parsed and normalised).
    positional: cores, pooler_connections, overrides, name
"""

EXAMPLES = r"""
# {"max_connections": 40, "shared_buffers": "1GB", "work_mem": "16MB", ...}
settings: "{{ ansible_facts['memtotal_mb'] | pg_tune(ansible_facts['processor_vcpus'], 20) }}"
"""

_UNITS_KB = {"b": None, "kb": 1, "mb": 1024, "gb": 1024**2, "tb": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?b)?\s*$", re.IGNORECASE)
MEMORY_KEYS = ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem")
INTEGER_KEYS = (
    "max_connections",
    "max_worker_processes",
    "max_parallel_workers",
    "max_parallel_workers_per_gather",
)
# Connections kept out of the pooler's share: superuser_reserved_connections (3), the
# metrics exporter, backups and an operator's psql.
RESERVED_CONNECTIONS = 10
MB = 1024
GB = 1024 * 1024


def _not_a_size(value: object, name: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"{name}: {value!r} is not a memory size (for example 512MB or 4GB)")


def pg_memory_kb(value: object, name: str = "size") -> int:
    if isinstance(value, bool):
        raise _not_a_size(value, name)
    if isinstance(value, int):
        if value < 0:
            raise _not_a_size(value, name)
        return value * MB
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _not_a_size(value, name)
    number, unit = int(match.group(1)), (match.group(2) or "").lower()
    if unit == "":
        return number * MB
    if unit == "b":
        if number % 1024:
            raise AnsibleFilterError(f"{name}: {value!r} is not a whole number of kilobytes")
        return number // 1024
    return number * _UNITS_KB[unit]


def _format_kb(kb: int) -> str:
    for unit, size in (("TB", 1024**3), ("GB", GB), ("MB", MB)):
        if kb >= size and kb % size == 0:
            return f"{kb // size}{unit}"
    return f"{kb}kB"


def pg_memory(value: object, name: str = "size") -> str:
    return _format_kb(pg_memory_kb(value, name))


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(str(value)) < minimum:
        raise AnsibleFilterError(f"{name}: {value!r} is not an integer >= {minimum}")
    return int(str(value))


def _round_mb(kb: float) -> int:
    return max(MB, int(kb) // MB * MB)


def pg_tune(
    memtotal_mb: object,
    cores: object,
    pooler_connections: object = 20,
    overrides: Mapping[str, object] | None = None,
    name: str = "postgresql",
) -> dict[str, object]:
    ram_kb = _positive_int(memtotal_mb, f"{name}: host memory (MB)", 256) * MB
    cpus = _positive_int(cores, f"{name}: host cores")
    pooled = _positive_int(pooler_connections, f"{name}_pooler_connections", 0)
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise AnsibleFilterError(f"{name}: overrides must be a mapping")

    def override(key: str) -> object | None:
        value = overrides.get(key)
        return None if value is None or value == "" else value

    settings: dict[str, object] = {}
    max_connections = override("max_connections")
    if max_connections is None:
        settings["max_connections"] = max(20, pooled + RESERVED_CONNECTIONS)
    else:
        settings["max_connections"] = _positive_int(max_connections, f"{name}_max_connections")
        if settings["max_connections"] < pooled + 3:
            raise AnsibleFilterError(
                f"{name}_max_connections: {settings['max_connections']} leaves no room for the "
                f"pooler's {pooled} server connections plus 3 reserved for superusers"
            )
    settings["max_worker_processes"] = max(8, cpus)
    settings["max_parallel_workers"] = cpus
    settings["max_parallel_workers_per_gather"] = max(1, cpus // 2)
    for key in INTEGER_KEYS[1:]:
        if override(key) is not None:
            settings[key] = _positive_int(override(key), f"{name}_{key}", 0)

    memory: dict[str, int] = {}
    for key in MEMORY_KEYS:
        if override(key) is not None:
            memory[key] = pg_memory_kb(override(key), f"{name}_{key}")
    shared = memory.get("shared_buffers", _round_mb(ram_kb / 4))
    if shared >= ram_kb:
        raise AnsibleFilterError(
            f"{name}_shared_buffers: {_format_kb(shared)} is not less than the host's "
            f"memory ({_format_kb(ram_kb)})"
        )
    memory.setdefault("shared_buffers", shared)
    memory.setdefault("effective_cache_size", _round_mb(ram_kb * 3 / 4))
    memory.setdefault("maintenance_work_mem", min(2 * GB, _round_mb(ram_kb / 16)))
    per_query = (ram_kb - shared) / (3 * int(settings["max_connections"]))
    per_query /= int(settings["max_parallel_workers_per_gather"])
    memory.setdefault("work_mem", min(256 * MB, _round_mb(per_query)))
    for key in MEMORY_KEYS:
        settings[key] = _format_kb(memory[key])
    unknown = sorted(set(overrides) - set(MEMORY_KEYS) - set(INTEGER_KEYS))
    if unknown:
        raise AnsibleFilterError(f"{name}: unknown setting(s) to override: {', '.join(unknown)}")
    return settings


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"pg_memory_kb": pg_memory_kb, "pg_memory": pg_memory, "pg_tune": pg_tune}
