"""morpheus_local.network: the Docker network of the local hosts, created once."""

from __future__ import annotations

import json

import pytest
from morpheus_local import network
from morpheus_local.errors import LocalError


def test_an_existing_network_on_the_subnet_is_kept(fake_docker, capsys):
    calls = fake_docker({"network inspect": json.dumps([{"Subnet": "172.30.10.0/24"}])})
    network.ensure_network()
    assert [c[:2] for c in calls] == [("network", "inspect")]
    assert capsys.readouterr().out == "==> network morpheus-local (172.30.10.0/24) exists\n"


def test_an_existing_network_on_another_subnet_is_refused(fake_docker):
    calls = fake_docker({"network inspect": json.dumps([{"Subnet": "10.9.0.0/16"}])})
    with pytest.raises(
        LocalError, match=r"with subnet \['10.9.0.0/16'\], not 172.30.10.0/24"
    ) as caught:
        network.ensure_network()
    assert "docker network rm morpheus-local" in caught.value.hint
    assert not any("create" in c for c in calls)


def test_a_missing_network_is_created_with_the_label(fake_docker):
    calls = fake_docker({"network inspect": (1, "", "network morpheus-local not found")})
    network.ensure_network()
    assert calls[-1] == (
        *("network", "create", "--subnet", "172.30.10.0/24"),
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
