"""Filters that turn the inventory into Prometheus scrape configurations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  monitoring_scrape_configs:
    description: >-
      Build Prometheus C(scrape_configs) from a list of jobs and the inventory. Each job
      names an inventory group (C(group)) and either a fixed C(port) or C(ports_var), the
      host variable holding a list of ports (every backend container's or worker's
      /metrics port), with C(default_ports) for hosts that do not set it. The address
      is the host variable named by C(address_var), else C(morpheus_private_address),
      else C(ansible_host), else the host's name. Every target carries a C(host) label
      (the inventory name). A group that is not in the inventory is refused; an empty
      group gives a job without targets.
    positional: groups, hostvars, name
    options:
      _input:
        description: >-
          The jobs: name, group, port or ports_var (+ default_ports), address_var,
          metrics_path, scheme.
        type: list
        required: true
      groups: {description: The inventory's C(groups)., type: dict, required: true}
      hostvars: {description: The inventory's C(hostvars)., type: dict, required: true}
      name: {description: Variable name quoted in error messages., type: str}
"""

EXAMPLES = r"""
scrape_configs: "{{ prometheus_scrape_jobs | monitoring_scrape_configs(groups, hostvars) }}"
"""

JOB_KEYS = {
    "name",
    "group",
    "port",
    "ports_var",
    "default_ports",
    "address_var",
    "metrics_path",
    "scheme",
}


def _port(value: object, where: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | str)
        or not str(value).strip().isdigit()
    ):
        raise AnsibleFilterError(f"{where}: port {value!r} is not a port number")
    port = int(str(value).strip())
    if not 1 <= port <= 65535:
        raise AnsibleFilterError(f"{where}: port {port} is out of range (1-65535)")
    return port


def _ports(value: object, where: str) -> list[int]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise AnsibleFilterError(f"{where}: ports {value!r} must be a list of port numbers")
    return [_port(port, where) for port in value]


def _address(host: str, variables: Mapping, address_var: str | None) -> str:
    for key in (address_var, "morpheus_private_address", "ansible_host"):
        if key and str(variables.get(key) or "").strip():
            return str(variables[key]).strip()
    return host


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _job(job: object, index: int, name: str) -> dict:
    where = f"{name}[{index}]"
    if not isinstance(job, Mapping):
        raise AnsibleFilterError(f"{where}: {job!r} is not a mapping (name, group, port)")
    unknown = set(job) - JOB_KEYS
    if unknown:
        raise AnsibleFilterError(
            f"{where}: unknown keys {sorted(unknown)}; known: {sorted(JOB_KEYS)}"
        )
    for key in ("name", "group"):
        if not isinstance(job.get(key), str) or not job[key].strip():
            raise AnsibleFilterError(f"{where}: '{key}' is required (a non-empty string)")
    if ("port" in job) == ("ports_var" in job):
        raise AnsibleFilterError(
            f"{where} ({job['name']}): set exactly one of 'port' and 'ports_var'"
        )
    return dict(job)


def monitoring_scrape_configs(
    jobs: Sequence[object] | None,
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Mapping],
    name: str = "prometheus_scrape_jobs",
) -> list[dict]:
    if jobs is None:
        return []
    if isinstance(jobs, str | bytes | Mapping) or not isinstance(jobs, Sequence):
        raise AnsibleFilterError(f"{name}: {jobs!r} must be a list of jobs")
    configs, seen = [], set()
    for index, raw in enumerate(jobs):
        job = _job(raw, index, name)
        where = f"{name}[{index}] ({job['name']})"
        if job["name"] in seen:
            raise AnsibleFilterError(f"{where}: job name {job['name']!r} is used twice")
        seen.add(job["name"])
        if job["group"] not in groups:
            known = ", ".join(sorted(g for g in groups if g != "ungrouped"))
            raise AnsibleFilterError(
                f"{where}: group {job['group']!r} is not an inventory group (the inventory has: "
                f"{known}); add the group to the inventory or point the job at one of these"
            )
        static_configs = []
        for host in groups[job["group"]]:
            variables = hostvars[host]
            if "port" in job:
                ports = [_port(job["port"], where)]
            else:
                value = variables.get(job["ports_var"])
                if value is None:
                    value = job.get("default_ports", [])
                ports = _ports(value, f"{where}, host {host}, {job['ports_var']}")
            if not ports:
                continue
            address = _address(host, variables, job.get("address_var"))
            targets = [_target(address, port) for port in dict.fromkeys(ports)]
            static_configs.append({"targets": targets, "labels": {"host": host}})
        config = {"job_name": job["name"], "static_configs": static_configs}
        for key in ("metrics_path", "scheme"):
            if job.get(key):
                config[key] = job[key]
        configs.append(config)
    return configs


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"monitoring_scrape_configs": monitoring_scrape_configs}
