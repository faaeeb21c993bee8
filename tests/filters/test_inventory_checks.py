"""Unit tests of filter_plugins/inventory_checks.py.

Plain dicts stand in for hostvars here (no file origins); tests/test_inventories.py runs
the filters through playbooks/preflight.yml on real inventories, files and lines included.
"""

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from inventory_checks import FilterModule, inventory_problems, placeholder_report

REQUIRED = ["edge", "api", "postgres"]
KNOWN = [*REQUIRED, "monitoring"]
ADDRESSED = ["postgres"]
UNKNOWN = "(file unknown: grep the inventory)"


def layout(**overrides):
    groups = {
        "all": ["edge-1", "api-1", "db-1"],
        "ungrouped": [],
        "edge": ["edge-1"],
        "api": ["api-1"],
        "postgres": ["db-1"],
        "monitoring": [],
    }
    hostvars = {
        "edge-1": {},
        "api-1": {},
        "db-1": {"morpheus_private_address": "10.0.0.4"},
    }
    for key, value in overrides.items():
        if key in hostvars or key == "stray-1":
            hostvars[key] = value
        else:
            groups[key] = value
    return hostvars, groups


def problems(hostvars, groups):
    return inventory_problems(hostvars, groups, REQUIRED, KNOWN, ADDRESSED)


@pytest.mark.parametrize(
    ("hostvars", "expected"),
    [
        ({"h": {"a": "fine", "b": [1, 2], "c": {"d": None}}}, []),
        ({"h": {"a": "CHANGE_ME"}}, [f"{UNKNOWN}: a = 'CHANGE_ME' (hosts: h)"]),
        (
            {"h": {"users": [{"name": "x", "keys": ["CHANGE_ME key"]}]}},
            [f"{UNKNOWN}: users[0].keys[0] = 'CHANGE_ME key' (hosts: h)"],
        ),
        (
            {"h": {"m": {"inner": {"deep": "x.CHANGE_ME.y"}}}},
            [f"{UNKNOWN}: m.inner.deep = 'x.CHANGE_ME.y' (hosts: h)"],
        ),
        # Ansible's own variables are not walked
        ({"h": {"inventory_hostname": "CHANGE_ME", "groups": {"all": ["CHANGE_ME"]}}}, []),
    ],
)
def test_placeholder_report_finds_nested_values(hostvars, expected):
    assert placeholder_report(hostvars, list(hostvars)) == expected


def test_placeholder_report_groups_hosts():
    hostvars = {f"h{n}": {"domain": "CHANGE_ME"} for n in range(1, 7)}
    assert placeholder_report(hostvars, list(hostvars)) == [
        f"{UNKNOWN}: domain = 'CHANGE_ME' (all 6 hosts)"
    ]
    assert placeholder_report(hostvars, ["h1", "h2", "h3", "h4", "h5"]) == [
        f"{UNKNOWN}: domain = 'CHANGE_ME' (all 5 hosts)"
    ]
    hostvars["h7"] = {}
    assert placeholder_report(hostvars, list(hostvars)) == [
        f"{UNKNOWN}: domain = 'CHANGE_ME' (hosts: h1, h2, h3, h4 and 2 more)"
    ]


def test_placeholder_report_custom_marker():
    assert placeholder_report({"h": {"a": "TODO"}}, ["h"], "TODO") == [
        f"{UNKNOWN}: a = 'TODO' (hosts: h)"
    ]
    with pytest.raises(AnsibleFilterError, match="the marker must not be empty"):
        placeholder_report({"h": {}}, ["h"], "")


class Templating(dict):
    """hostvars whose `broken` variable fails to template, as Ansible's would raise."""

    def __getitem__(self, key):
        if key == "broken":
            raise AnsibleError("template error while templating string: unexpected '}'")
        return super().__getitem__(key)


class HostVars(dict):
    """Like Ansible's hostvars: raw_get gives the variables as written, [] templates them."""

    def raw_get(self, host):
        return dict.__getitem__(self, host)

    def __getitem__(self, host):
        return Templating(dict.__getitem__(self, host))


def test_placeholder_report_names_a_variable_that_does_not_template():
    hostvars = HostVars(h={"fine": "x", "broken": "{{ oops }"})
    assert placeholder_report(hostvars, ["h"]) == [
        f"{UNKNOWN}: broken does not template: template error while templating string: "
        "unexpected '}' (hosts: h)"
    ]


def test_inventory_problems_accepts_a_sound_layout():
    assert problems(*layout()) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"api": [], "all": ["edge-1", "db-1"]},
            "group 'api' has no hosts: add one under all.children.api.hosts in hosts.yml",
        ),
        (
            {"all": ["edge-1", "api-1", "db-1", "stray-1"], "stray-1": {}},
            "host 'stray-1' is in none of the platform's groups (edge, api, postgres, monitoring): "
            "put it in one in hosts.yml, or remove it",
        ),
        (
            {"db-1": {}},
            "host 'db-1' (group postgres) has no morpheus_private_address: set it in hosts.yml or "
            "host_vars/db-1.yml",
        ),
        (
            {"db-1": {"morpheus_private_address": ""}},
            "host 'db-1' (group postgres) has no morpheus_private_address",
        ),
        (
            {"db-1": {"morpheus_private_address": "db-1.internal"}},
            "host 'db-1' (group postgres): morpheus_private_address 'db-1.internal' is not an "
            "IP address",
        ),
        (
            {"db-1": {"morpheus_private_address": "93.184.216.34"}},
            "host 'db-1' (group postgres): morpheus_private_address '93.184.216.34' is not a "
            "private address",
        ),
        (
            {"db-1": {"morpheus_private_address": "127.0.0.1"}},
            "host 'db-1' (group postgres): morpheus_private_address '127.0.0.1' is not a "
            "private address",
        ),
    ],
    ids=[
        "empty-group",
        "stray-host",
        "no-address",
        "empty-address",
        "hostname",
        "public",
        "loopback",
    ],
)
def test_inventory_problems_names_each_problem(overrides, message):
    found = problems(*layout(**overrides))
    assert len(found) == 1, found
    assert found[0].startswith(message), found


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.9", "192.168.1.1", "fd00::5"])
def test_private_addresses_pass(address):
    assert problems(*layout(**{"db-1": {"morpheus_private_address": address}})) == []


def test_a_placeholder_address_is_left_to_the_placeholder_report():
    assert problems(*layout(**{"db-1": {"morpheus_private_address": "CHANGE_ME"}})) == []


def test_an_empty_inventory_says_so():
    assert problems({}, {"all": [], "ungrouped": []}) == [
        "the inventory has no hosts: did hosts.yml parse? (see the warnings above; "
        "ansible-inventory --list -i <inventory> shows what Ansible read)"
    ]


def test_registered():
    filters = FilterModule().filters()
    assert filters["placeholder_report"] is placeholder_report
    assert filters["inventory_problems"] is inventory_problems
