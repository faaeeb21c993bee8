"""Unit tests of filter_plugins/docker_daemon.py."""

import pytest
from ansible.errors import AnsibleFilterError
from docker_daemon import FilterModule, docker_daemon_config

NOFILE = {"nofile": {"Name": "nofile", "Soft": 65536, "Hard": 65536}}
ROLE_DEFAULTS = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "5"},
    "live-restore": True,
    "default-ulimits": NOFILE,
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, {}),
        ({}, {}),
        (ROLE_DEFAULTS, ROLE_DEFAULTS),
        (
            {"log-driver": "local", "log-opts": {"max-size": "20m"}},
            {"log-driver": "local", "log-opts": {"max-size": "20m"}},
        ),
        # null drops a key (how a user removes one of the role's defaults)
        ({"storage-driver": None, "live-restore": True}, {"live-restore": True}),
        ({"storage-driver": "overlay2"}, {"storage-driver": "overlay2"}),
        (
            {"log-driver": "journald", "log-opts": {"tag": "{{.Name}}"}},
            {"log-driver": "journald", "log-opts": {"tag": "{{.Name}}"}},
        ),
        (
            {"log-opts": {"max-size": "512k", "max-file": "1"}},
            {"log-opts": {"max-size": "512k", "max-file": "1"}},
        ),
        (
            {"default-ulimits": {"nofile": {"Name": "nofile", "Soft": -1, "Hard": -1}}},
            {"default-ulimits": {"nofile": {"Name": "nofile", "Soft": -1, "Hard": -1}}},
        ),
        (
            {"default-address-pools": [{"base": "172.80.0.0/16", "size": 24}]},
            {"default-address-pools": [{"base": "172.80.0.0/16", "size": 24}]},
        ),
        (
            {"registry-mirrors": ["https://mirror.example.org"], "mtu": 1450},
            {"registry-mirrors": ["https://mirror.example.org"], "mtu": 1450},
        ),
        (
            {"features": {"buildkit": True}, "log-level": "warn"},
            {"features": {"buildkit": True}, "log-level": "warn"},
        ),
    ],
)
def test_accepts(config, expected):
    assert docker_daemon_config(config, "d") == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("live-restore", "d: expected a mapping of daemon.json keys, got string"),
        (
            {"log-opt": {"max-size": "10m"}},
            "d: 'log-opt' is not a daemon.json key dockerd knows; did you mean 'log-opts'?",
        ),
        ({"no-such-option": True}, "d: 'no-such-option' is not a daemon.json key dockerd knows"),
        ({"live-restore": "true"}, "d: 'live-restore' is 'true' (string); expected a boolean"),
        ({"mtu": True}, "d: 'mtu' is True (boolean); expected a integer"),
        ({"mtu": "1500"}, "d: 'mtu' is '1500' (string); expected a integer"),
        ({"dns": "10.0.0.2"}, "d: 'dns' is '10.0.0.2' (string); expected a list"),
        ({"dns": [1]}, "d: 'dns' must be a list of strings"),
        (
            {"log-opts": ["max-size=10m"]},
            "d: 'log-opts' is ['max-size=10m'] (list); expected a mapping",
        ),
        (
            {"log-opts": {"max-file": 3}},
            "d: 'log-opts.max-file' is 3 (integer); dockerd reads log options as strings only: "
            "write '3' in quotes",
        ),
        (
            {"log-opts": {"compress": True}},
            "d: 'log-opts.compress' is True (boolean); dockerd reads log options as strings "
            "only: write 'true' in quotes",
        ),
        (
            {"log-opts": {"max-size": "ten megabytes"}},
            "d: 'log-opts.max-size' is 'ten megabytes'; expected a size such as '10m'",
        ),
        (
            {"log-driver": "local", "log-opts": {"max-file": "0"}},
            "d: 'log-opts.max-file' is '0'; expected a whole number of files, at least '1'",
        ),
        (
            {"log-driver": "jsonfile"},
            "d: 'log-driver' is 'jsonfile'; expected one of awslogs, etwlogs, fluentd, gcplogs, "
            "gelf, journald, json-file, local, logentries, none, splunk, syslog",
        ),
        (
            {"log-level": "verbose"},
            "d: 'log-level' is 'verbose'; expected one of debug, info, warn, error, fatal",
        ),
        (
            {"storage-driver": "overlay"},
            "d: 'storage-driver' is 'overlay'; expected one of btrfs, devicemapper, "
            "fuse-overlayfs, overlay2, vfs, zfs",
        ),
        (
            {"default-ulimits": {"files": {"Name": "files", "Soft": 1, "Hard": 1}}},
            "d: 'default-ulimits.files' is not a ulimit; expected one of",
        ),
        (
            {"default-ulimits": {"nofile": {"Soft": 1, "Hard": 1}}},
            "d: 'default-ulimits.nofile' must be a mapping with exactly the keys Name, Soft, Hard",
        ),
        (
            {"default-ulimits": {"nofile": {"Name": "nproc", "Soft": 1, "Hard": 1}}},
            "d: 'default-ulimits.nofile' has Name 'nproc'; it must repeat the key 'nofile'",
        ),
        (
            {"default-ulimits": {"nofile": {"Name": "nofile", "Soft": "1024", "Hard": 2048}}},
            "d: 'default-ulimits.nofile.Soft' is '1024'; expected an integer (-1 = unlimited)",
        ),
        (
            {"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 4096, "Hard": 1024}}},
            "d: 'default-ulimits.nofile' has Soft 4096 above Hard 1024",
        ),
        (
            {"default-ulimits": {"nofile": {"Name": "nofile", "Soft": -1, "Hard": 1024}}},
            "d: 'default-ulimits.nofile' has Soft -1 above Hard 1024",
        ),
        (
            {"hosts": ["tcp://0.0.0.0:2375"]},
            "d: 'hosts' conflicts with the -H flag of the docker.service unit",
        ),
    ],
)
def test_refuses(config, message):
    with pytest.raises(AnsibleFilterError) as error:
        docker_daemon_config(config, "d")
    assert str(error.value).startswith(message)


def test_unknown_keys_pass_when_not_strict():
    # dockerd >= 23 checks those itself (`dockerd --validate`); types of known keys still count.
    assert docker_daemon_config({"new-option": 1}, "d", strict=False) == {"new-option": 1}
    with pytest.raises(AnsibleFilterError, match="'live-restore' is 'yes'"):
        docker_daemon_config({"new-option": 1, "live-restore": "yes"}, "d", strict=False)


def test_default_name_is_the_role_variable():
    with pytest.raises(AnsibleFilterError, match=r"^docker_daemon_options: 'mtu'"):
        docker_daemon_config({"mtu": "x"})


def test_registered():
    assert FilterModule().filters()["docker_daemon_config"] is docker_daemon_config
