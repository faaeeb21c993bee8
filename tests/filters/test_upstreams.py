"""Unit tests of filter_plugins/upstreams.py."""

import base64
import re

import pytest
from ansible.errors import AnsibleFilterError
from upstreams import (
    FilterModule,
    upstream_block,
    upstream_files,
    upstream_live_slots,
    upstream_members,
    upstream_servers,
    upstream_slots,
)


@pytest.mark.parametrize(
    ("hosts", "defaults", "expected"),
    [
        (None, {"port": 8000}, []),
        ([], {"port": 8000}, []),
        (
            [{"inventory_hostname": "api-1", "ansible_host": "10.0.0.5"}],
            {"port": 8000},
            [
                {
                    "address": "10.0.0.5",
                    "port": 8000,
                    "weight": 1,
                    "max_fails": 3,
                    "fail_timeout": "10s",
                    "backup": False,
                }
            ],
        ),
        (
            [{"inventory_hostname": "api-1"}],
            {"port": 8000},
            [
                {
                    "address": "api-1",
                    "port": 8000,
                    "weight": 1,
                    "max_fails": 3,
                    "fail_timeout": "10s",
                    "backup": False,
                }
            ],
        ),
        (
            [
                {
                    "inventory_hostname": "api-2",
                    "ansible_host": "10.0.0.6",
                    "nginx_backend_address": "10.1.0.6",
                    "nginx_backend_port": 9000,
                    "nginx_backend_weight": 3,
                    "nginx_backend_max_fails": 0,
                    "nginx_backend_fail_timeout": "30s",
                    "nginx_backend_backup": True,
                }
            ],
            {"port": 8000},
            [
                {
                    "address": "10.1.0.6",
                    "port": 9000,
                    "weight": 3,
                    "max_fails": 0,
                    "fail_timeout": "30s",
                    "backup": True,
                }
            ],
        ),
        (
            [{"inventory_hostname": "api-1"}],
            {"port": 8000, "max_fails": 5},
            [
                {
                    "address": "api-1",
                    "port": 8000,
                    "weight": 1,
                    "max_fails": 5,
                    "fail_timeout": "10s",
                    "backup": False,
                }
            ],
        ),
        (
            # A host with several backends: one member per port, in the order given.
            [
                {
                    "inventory_hostname": "api-1",
                    "nginx_backend_address": "10.0.0.5",
                    "nginx_backend_port": 9000,
                    "nginx_backend_ports": [8000, 8001],
                },
                {"inventory_hostname": "api-2", "ansible_host": "10.0.0.6"},
            ],
            {"port": 8000},
            [
                {
                    "address": "10.0.0.5",
                    "port": 8000,
                    "weight": 1,
                    "max_fails": 3,
                    "fail_timeout": "10s",
                    "backup": False,
                },
                {
                    "address": "10.0.0.5",
                    "port": 8001,
                    "weight": 1,
                    "max_fails": 3,
                    "fail_timeout": "10s",
                    "backup": False,
                },
                {
                    "address": "10.0.0.6",
                    "port": 8000,
                    "weight": 1,
                    "max_fails": 3,
                    "fail_timeout": "10s",
                    "backup": False,
                },
            ],
        ),
    ],
)
def test_upstream_members_reads_host_variables(hosts, defaults, expected):
    assert upstream_members(hosts, defaults, "g") == expected


@pytest.mark.parametrize(
    ("hosts", "defaults", "message"),
    [
        ("api-1", {"port": 8000}, "g: expected a list of hosts' variables, got str"),
        ({"api-1": {}}, {"port": 8000}, "g: expected a list of hosts' variables, got dict"),
        (["api-1"], {"port": 8000}, "g: 'api-1' is not a host's variables"),
        (
            [{"inventory_hostname": "api-1"}],
            {},
            "g: host api-1 has no nginx_backend_port and no default port",
        ),
        ([{"nginx_backend_port": 80}], {}, "g: host None has no address"),
        ([], {"prot": 80}, "g: unknown default key(s) prot"),
        (
            [{"inventory_hostname": "api-1", "nginx_backend_ports": "8000,8001"}],
            {},
            "g: host api-1: nginx_backend_ports must be a list of ports, got '8000,8001'",
        ),
        (
            [{"inventory_hostname": "api-1", "nginx_backend_ports": []}],
            {"port": 8000},
            "g: host api-1: nginx_backend_ports is empty (list one port at least, or remove"
            " the host from the group)",
        ),
    ],
)
def test_upstream_members_refuses(hosts, defaults, message):
    with pytest.raises(AnsibleFilterError) as error:
        upstream_members(hosts, defaults, "g")
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            [{"address": "10.0.0.5", "port": 8000}],
            ["server 10.0.0.5:8000 weight=1 max_fails=3 fail_timeout=10s;"],
        ),
        (
            [
                {"address": "api-1.internal", "port": "8000", "weight": "2"},
                {"address": "10.0.0.6", "port": 8000, "backup": "yes", "fail_timeout": 5},
            ],
            [
                "server api-1.internal:8000 weight=2 max_fails=3 fail_timeout=10s;",
                "server 10.0.0.6:8000 weight=1 max_fails=3 fail_timeout=5 backup;",
            ],
        ),
        (
            [{"address": "fd00::5", "port": 8000, "max_fails": 0, "fail_timeout": "500ms"}],
            ["server [fd00::5]:8000 weight=1 max_fails=0 fail_timeout=500ms;"],
        ),
        (
            [{"address": " 127.0.0.1 ", "port": 8000}, {"address": "127.0.0.1", "port": 8001}],
            [
                "server 127.0.0.1:8000 weight=1 max_fails=3 fail_timeout=10s;",
                "server 127.0.0.1:8001 weight=1 max_fails=3 fail_timeout=10s;",
            ],
        ),
    ],
)
def test_upstream_servers_renders_lines(members, expected):
    assert upstream_servers(members, "u") == expected


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "u: the upstream pool is empty (no backend host)"),
        (None, "u: expected a list of upstream members, got NoneType"),
        ("10.0.0.5:80", "u: expected a list of upstream members, got str"),
        ([{"address": "10.0.0.5"}], "u: {'address': '10.0.0.5'} needs an address and a port"),
        ([{"address": "10.0.0.5", "port": 0}], "u: port 0 is out of range (1-65535)"),
        ([{"address": "10.0.0.5", "port": 70000}], "u: port 70000 is out of range (1-65535)"),
        ([{"address": "10.0.0.5", "port": "http"}], "u: port 'http' is not an integer"),
        ([{"address": "10.0.0.5", "port": True}], "u: port True is not an integer"),
        (
            [{"address": "bad host!", "port": 80}],
            "u: address 'bad host!' is not an IP address or host name",
        ),
        ([{"address": "", "port": 80}], "u: address '' is not an IP address or host name"),
        ([{"address": "a", "port": 80, "weight": 0}], "u: weight 0 is out of range (1-1000)"),
        ([{"address": "a", "port": 80, "max_fails": -1}], "u: max_fails -1 is not an integer"),
        (
            [{"address": "a", "port": 80, "fail_timeout": "ten"}],
            "u: fail_timeout 'ten' is not a duration (for example 10s)",
        ),
        ([{"address": "a", "port": 80, "backup": "maybe"}], "u: backup 'maybe' is not a boolean"),
        (
            [{"address": "a", "port": 80, "weigth": 2}],
            "u: unknown key(s) weigth in {'address': 'a', 'port': 80, 'weigth': 2}",
        ),
        ([{"address": "a", "port": 80}, {"address": "a", "port": "80"}], "u: a:80 is listed twice"),
        (
            [{"address": "a", "port": 80, "backup": True}],
            "u: every server is a backup; at least one must not be",
        ),
        (["a:80"], "u: 'a:80' is not an upstream member"),
    ],
)
def test_upstream_servers_refuses(members, message):
    with pytest.raises(AnsibleFilterError) as error:
        upstream_servers(members, "u")
    assert str(error.value) == message


def test_upstream_block_adds_keepalive():
    members = [{"address": "10.0.0.5", "port": 8000}]
    assert upstream_block(members, 32, "u") == [
        "server 10.0.0.5:8000 weight=1 max_fails=3 fail_timeout=10s;",
        "keepalive 32;",
    ]
    assert upstream_block(members, 0, "u") == [
        "server 10.0.0.5:8000 weight=1 max_fails=3 fail_timeout=10s;",
    ]


@pytest.mark.parametrize(
    ("keepalive", "message"),
    [
        (-1, "u: keepalive -1 is not an integer"),
        ("many", "u: keepalive 'many' is not an integer"),
        (20000, "u: keepalive 20000 is out of range (0-10000)"),
    ],
)
def test_upstream_block_refuses_keepalive(keepalive, message):
    with pytest.raises(AnsibleFilterError) as error:
        upstream_block([{"address": "a", "port": 80}], keepalive, "u")
    assert str(error.value) == message


def test_adding_a_host_adds_a_server():
    group = [{"inventory_hostname": "api-1", "ansible_host": "10.0.0.5"}]
    before = upstream_servers(upstream_members(group, {"port": 8000}, "g"), "g")
    group.append({"inventory_hostname": "api-2", "ansible_host": "10.0.0.6"})
    after = upstream_servers(upstream_members(group, {"port": 8000}, "g"), "g")
    assert len(after) == len(before) + 1
    assert after[-1] == "server 10.0.0.6:8000 weight=1 max_fails=3 fail_timeout=10s;"


def test_several_backends_per_host_become_server_lines():
    group = [
        {
            "inventory_hostname": "api-1",
            "ansible_host": "10.0.0.5",
            "nginx_backend_ports": [8000, 8001],
        }
    ]
    assert upstream_block(upstream_members(group, {}, "g"), 0, "g") == [
        "server 10.0.0.5:8000 weight=1 max_fails=3 fail_timeout=10s;",
        "server 10.0.0.5:8001 weight=1 max_fails=3 fail_timeout=10s;",
    ]
    with pytest.raises(AnsibleFilterError, match=r"10\.0\.0\.5:8000 is listed twice"):
        upstream_servers(
            upstream_members([{**group[0], "nginx_backend_ports": [8000, 8000]}], {}, "g"), "g"
        )


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "upstream_members",
        "upstream_servers",
        "upstream_slots",
        "upstream_files",
        "upstream_live_slots",
        "upstream_block",
    }


SLOTTED = {
    "inventory_hostname": "api-1",
    "nginx_backend_address": "10.0.0.5",
    "nginx_backend_slots": {"blue": [8000, 8001], "green": [8100, 8101]},
}


def test_upstream_slots_lists_every_slot_and_serves_from_the_one_named_live():
    [host] = upstream_slots([SLOTTED], {"max_fails": 2}, {"api-1": "green"})
    assert host["host"] == "api-1"
    assert host["live"] == "green"
    assert host["slots"] == {
        "blue": [
            "server 10.0.0.5:8000 weight=1 max_fails=2 fail_timeout=10s;",
            "server 10.0.0.5:8001 weight=1 max_fails=2 fail_timeout=10s;",
        ],
        "green": [
            "server 10.0.0.5:8100 weight=1 max_fails=2 fail_timeout=10s;",
            "server 10.0.0.5:8101 weight=1 max_fails=2 fail_timeout=10s;",
        ],
    }


def test_upstream_slots_defaults_to_the_first_slot_and_to_one_main_slot():
    plain = {"inventory_hostname": "api-2", "ansible_host": "10.0.0.6", "nginx_backend_port": 9000}
    first, second = upstream_slots([SLOTTED, plain], None, {})
    assert first["live"] == "blue"
    assert second == {
        "host": "api-2",
        "live": "main",
        "slots": {"main": ["server 10.0.0.6:9000 weight=1 max_fails=3 fail_timeout=10s;"]},
    }


@pytest.mark.parametrize(
    ("hosts", "live", "message"),
    [
        ([SLOTTED], {"api-1": "purple"}, "serves from slot 'purple', which it does not have"),
        ([{**SLOTTED, "nginx_backend_slots": [8000]}], {}, "must map slot names to lists"),
        ([{**SLOTTED, "nginx_backend_slots": {}}], {}, "must map slot names to lists"),
        ([{**SLOTTED, "nginx_backend_slots": {"Blue": [1]}}], {}, "slot name 'Blue'"),
        ([{**SLOTTED, "nginx_backend_slots": {"blue": []}}], {}, "nginx_backend_ports is empty"),
        ([SLOTTED, SLOTTED | {"inventory_hostname": "api-9"}], {}, "10.0.0.5:8000 is listed twice"),
        ([{"nginx_backend_port": 1}], {}, "lack inventory_hostname"),
        ([SLOTTED], "blue", "live must map host names to slots"),
    ],
)
def test_upstream_slots_refuses_what_nginx_could_not_serve(hosts, live, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        upstream_slots(hosts, None, live)


def test_upstream_files_write_one_file_per_slot_and_link_the_live_one():
    pools = upstream_slots([SLOTTED], None, {"api-1": "green"})
    assert upstream_files(pools) == {
        "files": [
            {
                "name": "api-1.blue.conf",
                "content": "# api-1, slot blue\n"
                "server 10.0.0.5:8000 weight=1 max_fails=3 fail_timeout=10s;\n"
                "server 10.0.0.5:8001 weight=1 max_fails=3 fail_timeout=10s;\n",
            },
            {
                "name": "api-1.green.conf",
                "content": "# api-1, slot green\n"
                "server 10.0.0.5:8100 weight=1 max_fails=3 fail_timeout=10s;\n"
                "server 10.0.0.5:8101 weight=1 max_fails=3 fail_timeout=10s;\n",
            },
        ],
        "links": [{"name": "api-1.conf", "target": "../api-1.green.conf"}],
    }
    with pytest.raises(AnsibleFilterError, match="is not a pool"):
        upstream_files([{"host": "api-1"}])


def test_upstream_live_slots_prefers_this_run_then_the_hosts_record():
    hosts = [
        {"inventory_hostname": "api-1", "nginx_backend_live_slot": "green"},
        {"inventory_hostname": "api-2", "nginx_backend_live_slot": ""},
        {"inventory_hostname": "api-3"},
    ]
    records = [
        {"item": "api-1", "content": base64.b64encode(b"blue\n").decode()},
        {"item": "api-2", "content": base64.b64encode(b"green\n").decode()},
        {"item": "api-3", "failed": True, "msg": "file not found"},
    ]
    assert upstream_live_slots(hosts, records) == {"api-1": "green", "api-2": "green"}
    assert upstream_live_slots(hosts, None) == {"api-1": "green"}
    assert upstream_live_slots(None, records) == {}
