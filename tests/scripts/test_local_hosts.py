"""morpheus_local.hosts: the local inventories' hosts, addresses and groups.

The inventories are read with the real ansible-inventory.
"""

from __future__ import annotations

import pytest
from morpheus_local import hosts
from morpheus_local.errors import LocalError
from morpheus_local.paths import ROOT


def test_single_inventory_is_one_host_in_every_group(inventories):
    inventory = inventories["single"]
    assert [h.name for h in inventory.hosts] == ["morpheus-local"]
    host = inventory.hosts[0]
    assert host.address == "172.30.10.10"
    assert {"edge", "api", "workers", "postgres", "redis", "acme", "monitoring"} <= host.groups
    assert inventory.first("edge") == host
    assert inventory.first("acme") == host


def test_multihost_inventory_has_one_host_per_role(inventories):
    inventory = inventories["multihost"]
    addresses = {h.name: h.address for h in inventory.hosts}
    assert addresses == {
        "morpheus-local-edge": "172.30.10.11",
        "morpheus-local-api-1": "172.30.10.12",
        "morpheus-local-api-2": "172.30.10.13",
        "morpheus-local-worker-1": "172.30.10.14",
        "morpheus-local-db": "172.30.10.15",
        "morpheus-local-monitor": "172.30.10.16",
    }
    groups = {h.name: h.groups for h in inventory.hosts}
    assert {"edge", "acme"} <= groups["morpheus-local-edge"]
    assert {"postgres", "redis"} <= groups["morpheus-local-db"]
    assert "monitoring" in groups["morpheus-local-monitor"]
    assert "api" in groups["morpheus-local-api-2"]
    assert "workers" in groups["morpheus-local-worker-1"]
    assert "edge" not in groups["morpheus-local-api-1"]
    assert inventory.first("edge").name == "morpheus-local-edge"
    assert inventory.groups["api"] == ["morpheus-local-api-1", "morpheus-local-api-2"]


def test_every_layout_names_an_inventory_with_hosts_yml():
    assert set(hosts.LAYOUTS) == {"single", "multihost"}
    for path in hosts.LAYOUTS.values():
        assert (ROOT / path / "hosts.yml").is_file(), path


def test_the_edge_host_has_its_inventory_variables(inventories):
    inventory = inventories["single"]
    variables = hosts.host_vars(inventory, inventory.first("edge"))
    assert variables["morpheus_private_address"] == "172.30.10.10"


def test_a_missing_ansible_inventory_asks_for_make_setup(monkeypatch):
    monkeypatch.setattr(hosts, "BIN", hosts.ROOT / "absent" / "bin")
    with pytest.raises(LocalError, match="absent/bin/ansible-inventory is missing") as caught:
        hosts.load_inventory("single")
    assert caught.value.hint == "run `make setup` first."


# --- parsing ansible-inventory's JSON ----------------------------------------------


def listing(hostvars: dict, **groups) -> dict:
    return {"_meta": {"hostvars": hostvars}, "all": {"children": list(groups)}, **groups}


def test_groups_are_resolved_through_children():
    data = listing(
        {"a": {"morpheus_private_address": "172.30.10.20"}},
        local={"hosts": ["a"]},
        edge={"children": ["local"]},
        front={"children": ["edge"]},
    )
    inventory = hosts.parse_inventory("inv", data)
    assert inventory.hosts[0].groups == frozenset({"local", "edge", "front"})
    assert inventory.first("front").name == "a"


def test_a_group_that_contains_itself_ends():
    data = listing(
        {"a": {"morpheus_private_address": "172.30.10.20"}},
        edge={"hosts": ["a"], "children": ["loop"]},
        loop={"children": ["edge"]},
    )
    assert hosts.group_members(data, "edge") == ["a"]


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"a": {}}, "has no morpheus_private_address"),
        ({"a": {"morpheus_private_address": "10.0.0.5"}}, "is not in 172.30.10.0/23"),
        ({"a": {"morpheus_private_address": "172.30.12.1"}}, "is not in 172.30.10.0/23"),
        ({"a": {"morpheus_private_address": "not-an-ip"}}, "is not in 172.30.10.0/23"),
    ],
)
def test_a_host_without_a_local_address_is_refused(hostvars, message):
    with pytest.raises(LocalError, match=message):
        hosts.parse_inventory("inv", listing(hostvars, edge={"hosts": ["a"]}))


def test_two_hosts_on_one_address_are_refused():
    same = {"morpheus_private_address": "172.30.10.20"}
    data = listing({"a": same, "b": same}, edge={"hosts": ["a", "b"]})
    with pytest.raises(LocalError, match="share one morpheus_private_address"):
        hosts.parse_inventory("inv", data)


def test_an_inventory_without_hosts_is_refused():
    with pytest.raises(LocalError, match="inv has no hosts"):
        hosts.parse_inventory("inv", listing({}))


def test_an_inventory_without_an_edge_host_says_so():
    data = listing({"a": {"morpheus_private_address": "172.30.10.20"}}, api={"hosts": ["a"]})
    with pytest.raises(LocalError, match="no host in group edge"):
        hosts.parse_inventory("inv", data).first("edge")
