"""Check a Docker daemon.json before it reaches a host.

Debian's docker.io (20.10) has no `dockerd --validate` (it arrived in Docker 23),
and a daemon.json that dockerd refuses leaves the engine stopped after its restart.
This filter knows the keys dockerd reads and their JSON types, and names the bad one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
filters:
  docker_daemon_config:
    description: >-
      Validate a Docker daemon configuration (the content of /etc/docker/daemon.json)
      and return it without the keys whose value is null (null drops a default).
      Unknown keys, wrong JSON types, log options that are not strings, malformed
      log rotation sizes, ulimits whose soft limit exceeds the hard one and the
      C(hosts) key (it conflicts with the -H flag of the systemd unit) are refused
      with a message that names the key.
    positional: name, strict
    options:
      _input: {description: The configuration., type: dict, required: true}
      name: {description: Variable name quoted in error messages., type: str}
      strict: {description: Refuse keys this filter does not know., type: bool, default: true}
"""

EXAMPLES = r"""
# {"live-restore": true, "log-driver": "local"}
config: "{{ {'live-restore': true, 'log-driver': 'local', 'mtu': none} | docker_daemon_config }}"
"""

STR, BOOL, INT, LIST, DICT = "string", "boolean", "integer", "list", "mapping"

# The keys dockerd (20.10 to 27) reads from daemon.json and their JSON types.
KNOWN_KEYS: dict[str, str] = {
    "allow-nondistributable-artifacts": LIST,
    "api-cors-header": STR,
    "authorization-plugins": LIST,
    "bip": STR,
    "bridge": STR,
    "builder": DICT,
    "cgroup-parent": STR,
    "containerd": STR,
    "containerd-namespace": STR,
    "containerd-plugins-namespace": STR,
    "cpu-rt-period": INT,
    "cpu-rt-runtime": INT,
    "data-root": STR,
    "debug": BOOL,
    "default-address-pools": LIST,
    "default-cgroupns-mode": STR,
    "default-gateway": STR,
    "default-gateway-v6": STR,
    "default-ipc-mode": STR,
    "default-network-opts": DICT,
    "default-runtime": STR,
    "default-shm-size": STR,
    "default-ulimits": DICT,
    "dns": LIST,
    "dns-opts": LIST,
    "dns-search": LIST,
    "exec-opts": LIST,
    "exec-root": STR,
    "experimental": BOOL,
    "features": DICT,
    "fixed-cidr": STR,
    "fixed-cidr-v6": STR,
    "group": STR,
    "hosts": LIST,
    "icc": BOOL,
    "init": BOOL,
    "init-path": STR,
    "insecure-registries": LIST,
    "ip": STR,
    "ip-forward": BOOL,
    "ip-masq": BOOL,
    "ip6tables": BOOL,
    "iptables": BOOL,
    "ipv6": BOOL,
    "labels": LIST,
    "live-restore": BOOL,
    "log-driver": STR,
    "log-format": STR,
    "log-level": STR,
    "log-opts": DICT,
    "max-concurrent-downloads": INT,
    "max-concurrent-uploads": INT,
    "max-download-attempts": INT,
    "metrics-addr": STR,
    "mtu": INT,
    "no-new-privileges": BOOL,
    "node-generic-resources": LIST,
    "oom-score-adjust": INT,
    "pidfile": STR,
    "proxies": DICT,
    "raw-logs": BOOL,
    "registry-mirrors": LIST,
    "runtimes": DICT,
    "seccomp-profile": STR,
    "selinux-enabled": BOOL,
    "shutdown-timeout": INT,
    "storage-driver": STR,
    "storage-opts": LIST,
    "swarm-default-advertise-addr": STR,
    "tls": BOOL,
    "tlscacert": STR,
    "tlscert": STR,
    "tlskey": STR,
    "tlsverify": BOOL,
    "userland-proxy": BOOL,
    "userland-proxy-path": STR,
    "userns-remap": STR,
}

LOG_DRIVERS = (
    "awslogs",
    "etwlogs",
    "fluentd",
    "gcplogs",
    "gelf",
    "journald",
    "json-file",
    "local",
    "logentries",
    "none",
    "splunk",
    "syslog",
)
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
STORAGE_DRIVERS = (
    "btrfs",
    "devicemapper",
    "fuse-overlayfs",
    "overlay2",
    "vfs",
    "zfs",
)
ULIMITS = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
# Sizes as dockerd's units.FromHumanSize reads them: "10m", "512k", "1g", "100".
SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?\s?[kKmMgGtT]?[bB]?$")


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return STR
    if isinstance(value, Mapping):
        return DICT
    if isinstance(value, list | tuple):
        return LIST
    return type(value).__name__


def _fail(name: str, key: str, message: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"{name}: '{key}' {message}")


def _check_choice(name: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(name, key, f"is {value!r}; expected one of {', '.join(choices)}")


def _check_log_opts(name: str, opts: Mapping, driver: str) -> None:
    for opt, value in opts.items():
        if not isinstance(value, str):
            quoted = str(value).lower() if isinstance(value, bool) else str(value)
            raise AnsibleFilterError(
                f"{name}: 'log-opts.{opt}' is {value!r} ({_type_name(value)}); dockerd reads "
                f"log options as strings only: write '{quoted}' in quotes"
            )
    if driver in ("json-file", "local"):
        if "max-size" in opts and not SIZE.match(opts["max-size"]):
            raise AnsibleFilterError(
                f"{name}: 'log-opts.max-size' is {opts['max-size']!r}; "
                "expected a size such as '10m'"
            )
        if "max-file" in opts and (not opts["max-file"].isdigit() or int(opts["max-file"]) < 1):
            raise AnsibleFilterError(
                f"{name}: 'log-opts.max-file' is {opts['max-file']!r}; expected a whole number "
                "of files, at least '1'"
            )


def _check_ulimits(name: str, ulimits: Mapping) -> None:
    for limit, spec in ulimits.items():
        where = f"default-ulimits.{limit}"
        if limit not in ULIMITS:
            raise _fail(name, where, f"is not a ulimit; expected one of {', '.join(ULIMITS)}")
        if not isinstance(spec, Mapping) or set(spec) != {"Name", "Soft", "Hard"}:
            raise _fail(name, where, "must be a mapping with exactly the keys Name, Soft, Hard")
        if spec["Name"] != limit:
            raise _fail(name, where, f"has Name {spec['Name']!r}; it must repeat the key {limit!r}")
        for bound in ("Soft", "Hard"):
            value = spec[bound]
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise _fail(
                    name, f"{where}.{bound}", f"is {value!r}; expected an integer (-1 = unlimited)"
                )
        soft, hard = spec["Soft"], spec["Hard"]
        if hard != -1 and (soft == -1 or soft > hard):
            raise _fail(name, where, f"has Soft {soft} above Hard {hard}")


def docker_daemon_config(
    config: Mapping | None, name: str = "docker_daemon_options", strict: bool = True
) -> dict:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise AnsibleFilterError(
            f"{name}: expected a mapping of daemon.json keys, got {_type_name(config)}"
        )
    result = {str(key): value for key, value in config.items() if value is not None}
    for key, value in result.items():
        expected = KNOWN_KEYS.get(key)
        if expected is None:
            if strict:
                close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise _fail(name, key, f"is not a daemon.json key dockerd knows{hint}")
            continue
        if _type_name(value) != expected:
            raise _fail(name, key, f"is {value!r} ({_type_name(value)}); expected a {expected}")
        if expected == LIST and not all(isinstance(item, str | Mapping) for item in value):
            raise _fail(name, key, "must be a list of strings")
    if "hosts" in result:
        raise _fail(
            name,
            "hosts",
            "conflicts with the -H flag of the docker.service unit (dockerd would not start); "
            "add listeners with a systemd drop-in instead",
        )
    driver = result.get("log-driver", "json-file")
    _check_choice(name, "log-driver", driver, LOG_DRIVERS)
    if "log-level" in result:
        _check_choice(name, "log-level", result["log-level"], LOG_LEVELS)
    if "storage-driver" in result:
        _check_choice(name, "storage-driver", result["storage-driver"], STORAGE_DRIVERS)
    _check_log_opts(name, result.get("log-opts", {}), driver)
    _check_ulimits(name, result.get("default-ulimits", {}))
    return result


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"docker_daemon_config": docker_daemon_config}
