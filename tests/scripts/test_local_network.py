"""morpheus_local.network: the Docker network of the local hosts, created once."""

from __future__ import annotations

import ipaddress
import json

import pytest
from morpheus_local import hosts, network
from morpheus_local.errors import LocalError


def test_an_existing_network_on_the_subnet_is_kept(fake_docker, capsys):
    calls = fake_docker({"network inspect": json.dumps([{"Subnet": "172.30.10.0/23"}])})
    network.ensure_network()
    assert [c[:2] for c in calls] == [("network", "inspect")]
    assert capsys.readouterr().out == "==> network morpheus-local (172.30.10.0/23) exists\n"


@pytest.mark.parametrize("subnet", ["10.9.0.0/16", "172.30.10.0/24"])
def test_an_existing_network_on_another_subnet_is_refused(fake_docker, subnet):
    calls = fake_docker({"network inspect": json.dumps([{"Subnet": subnet}])})
    with pytest.raises(
        LocalError, match=rf"with subnet \['{subnet}'\], not 172.30.10.0/23"
    ) as caught:
        network.ensure_network()
    # The network of a platform made before it grew has the hosts attached.
    assert "`make down`" in caught.value.hint
    assert "docker network rm morpheus-local" in caught.value.hint
    assert not any("create" in c for c in calls)


def test_the_network_is_every_layouts_private_network(inventories):
    """The hosts' firewalls open their internal ports to morpheus_private_networks: the
    network make up creates, no more and no less, with every host's address in it."""
    subnet = ipaddress.ip_network(network.SUBNET)
    assert subnet.num_addresses >= 512  # the load generator's room (tests/loadtest)
    for inventory in inventories.values():
        variables = hosts.host_vars(inventory, inventory.hosts[0])
        assert variables["morpheus_private_networks"] == [network.SUBNET], inventory.path
        assert all(ipaddress.ip_address(h.address) in subnet for h in inventory.hosts)
        # Docker's gateway, which the operator's networks name, is the subnet's first.
        assert variables["morpheus_monitoring_operator_networks"] == [str(subnet[1])]


def test_a_missing_network_is_created_with_the_label(fake_docker):
    calls = fake_docker({"network inspect": (1, "", "network morpheus-local not found")})
    network.ensure_network()
    assert calls[-1] == (
        *("network", "create", "--subnet", "172.30.10.0/23"),
        *("--label", "org.morpheus.local=1", "morpheus-local"),
    )


def test_a_failed_creation_points_at_overlapping_networks(fake_docker):
    fake_docker(
        {
            "network inspect": (1, "", "not found"),
            "network create": (1, "", "Pool overlaps with other one on this address space"),
        }
    )
    with pytest.raises(LocalError, match="Pool overlaps") as caught:
        network.ensure_network()
    assert "docker network ls" in caught.value.hint
