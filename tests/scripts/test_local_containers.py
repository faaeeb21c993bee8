"""morpheus_local.containers: the hosts' containers, created, reused and waited for.

The docker run arguments come from the real inventories; everything that would talk to
Docker goes to the fake_docker stand-in.
"""

from __future__ import annotations

import json
import re

import pytest
from morpheus_local import containers
from morpheus_local.errors import LocalError
from morpheus_local.hosts import Inventory

CAPS = {"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_CHROOT", "MKNOD"}
CAPS |= {"AUDIT_WRITE", "SETFCAP"}
DEFAULT_PORTS = {443: 443, 80: 80}
PS_FORMAT = '{{.Names}}\t{{.State}}\t{{.Label "org.morpheus.local.layout"}}'


def pairs(args: list[str], flag: str) -> list[str]:
    """Every value given to `flag` in a docker argument list."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def bindings(ports: dict[int, int]) -> str:
    """`docker container inspect` output of .HostConfig.PortBindings for these ports."""
    return json.dumps(
        {f"{c}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(h)}] for c, h in ports.items()}
    )


# --- the docker run arguments --------------------------------------------------------


def test_container_args_of_the_single_host(inventories):
    inventory = inventories["single"]
    host = inventory.hosts[0]
    args = containers.run_args(inventory, host, "single", DEFAULT_PORTS)
    assert args[:2] == ["run", "--detach"]
    assert args[-2:] == ["morpheus/fleet:bookworm", "/lib/systemd/systemd"]
    assert pairs(args, "--name") == pairs(args, "--hostname") == ["morpheus-local"]
    assert set(pairs(args, "--cap-add")) == CAPS
    assert not any(a.startswith("--privileged") or a == "--cap-add=ALL" for a in args)
    assert "ALL" not in pairs(args, "--cap-add")
    assert pairs(args, "--security-opt") == ["seccomp=unconfined", "apparmor=unconfined"]
    assert "--cgroupns=host" in args
    assert pairs(args, "--tmpfs") == ["/run", "/run/lock", "/tmp:exec"]
    assert pairs(args, "--volume") == [
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "morpheus-local-docker:/var/lib/docker",
    ]
    assert pairs(args, "--network") == ["morpheus-local"]
    assert pairs(args, "--ip") == ["172.30.10.10"]
    assert pairs(args, "--label") == ["org.morpheus.local=1", "org.morpheus.local.layout=single"]
    assert pairs(args, "--restart") == ["unless-stopped"]
    assert pairs(args, "--publish") == ["127.0.0.1:443:443", "127.0.0.1:80:80"]


def test_multihost_publishes_on_the_edge_and_shares_storage_with_api_and_workers(inventories):
    inventory = inventories["multihost"]
    args = {
        h.name: containers.run_args(inventory, h, "multihost", DEFAULT_PORTS)
        for h in inventory.hosts
    }
    storage = "morpheus-local-storage:/var/lib/morpheus/storage"
    for name, host_args in args.items():
        volumes = pairs(host_args, "--volume")
        assert f"{name}-docker:/var/lib/docker" in volumes
        sharing = name in {
            "morpheus-local-api-1",
            "morpheus-local-api-2",
            "morpheus-local-worker-1",
        }
        assert (storage in volumes) is sharing, name
        publishing = name == "morpheus-local-edge"
        assert bool(pairs(host_args, "--publish")) is publishing, name
        assert "org.morpheus.local.layout=multihost" in pairs(host_args, "--label")
    assert pairs(args["morpheus-local-db"], "--ip") == ["172.30.10.15"]


def test_shared_storage_is_only_for_the_multihost_layout(inventories):
    host = inventories["single"].hosts[0]
    assert "api" in host.groups
    assert containers.volumes_of(host, "single") == [("morpheus-local-docker", "/var/lib/docker")]


def test_other_host_ports_are_published_to_the_edge_ports(inventories):
    inventory = inventories["single"]
    args = containers.run_args(inventory, inventory.hosts[0], "single", {443: 8443, 80: 8080})
    assert pairs(args, "--publish") == ["127.0.0.1:8443:443", "127.0.0.1:8080:80"]


# --- existing containers -----------------------------------------------------------------


def test_docker_ps_listing_is_parsed():
    text = "morpheus-local-edge\trunning\tmultihost\nmorpheus-local-db\texited\tmultihost\n\n"
    assert containers.parse_ps(text) == {
        "morpheus-local-edge": ("running", "multihost"),
        "morpheus-local-db": ("exited", "multihost"),
    }


def test_the_listing_asks_docker_for_the_labelled_containers(fake_docker):
    calls = fake_docker({"ps --all": "morpheus-local\trunning\tsingle\n"})
    assert containers.local_containers() == {"morpheus-local": ("running", "single")}
    assert calls == [
        ("ps", "--all", "--filter", "label=org.morpheus.local=1", "--format", PS_FORMAT)
    ]


def test_containers_of_the_same_layout_are_accepted():
    containers.check_layout({"morpheus-local": ("exited", "single")}, "single")


def test_containers_of_the_other_layout_ask_for_make_down():
    with pytest.raises(LocalError) as caught:
        containers.check_layout({"morpheus-local": ("running", "single")}, "multihost")
    assert "morpheus-local" in str(caught.value)
    assert "make down" in caught.value.hint


def test_published_ports_are_read_from_the_port_bindings(fake_docker):
    fake_docker({"PortBindings": bindings({443: 8443, 80: 8080})})
    assert containers.published_ports("morpheus-local") == {443: 8443, 80: 8080}


def test_a_container_without_port_bindings_publishes_nothing(fake_docker):
    fake_docker({"PortBindings": "null\n"})
    assert containers.published_ports("morpheus-local-db") == {}


# --- before creating anything ------------------------------------------------------------


def test_preflight_refuses_a_container_it_did_not_create(inventories, fake_docker):
    fake_docker({"inspect --format {{.Name}} morpheus-local": "/morpheus-local\n"})
    with pytest.raises(LocalError, match="a container named morpheus-local exists") as caught:
        containers.preflight(inventories["single"], "single", DEFAULT_PORTS)
    assert "docker rm -f morpheus-local" in caught.value.hint


def test_preflight_refuses_an_edge_that_publishes_other_ports(inventories, fake_docker):
    fake_docker(
        {
            "ps --all": "morpheus-local\trunning\tsingle\n",
            "PortBindings": bindings({443: 8443, 80: 8080}),
        }
    )
    shown = "publishes 127.0.0.1:8080->80, 127.0.0.1:8443->443"
    with pytest.raises(LocalError, match=re.escape(shown)):
        containers.preflight(inventories["single"], "single", DEFAULT_PORTS)


def test_preflight_accepts_a_running_edge_on_the_ports_asked_for(inventories, fake_docker):
    # Ports 443 and 80 may be taken here: a running edge's own ports are not checked.
    listing = "morpheus-local\trunning\tsingle\n"
    fake_docker({"ps --all": listing, "PortBindings": bindings(DEFAULT_PORTS)})
    existing, ports = containers.preflight(inventories["single"], "single", DEFAULT_PORTS)
    assert existing == {"morpheus-local": ("running", "single")}
    assert ports == DEFAULT_PORTS


def test_preflight_checks_the_ports_when_the_edge_is_not_running(
    inventories, fake_docker, taken_port, free_port
):
    fake_docker({"inspect --format {{.Name}}": (1, "", "No such container")})
    with pytest.raises(LocalError, match=f"port {taken_port} on 127.0.0.1 is already taken"):
        containers.preflight(inventories["single"], "single", {443: taken_port, 80: free_port()})


# --- creating and starting ---------------------------------------------------------------


def test_a_running_container_is_reused(inventories, fake_docker, capsys):
    calls = fake_docker({})
    existing = {"morpheus-local": ("running", "single")}
    containers.ensure_containers(inventories["single"], "single", DEFAULT_PORTS, existing)
    assert calls == []
    assert "morpheus-local (172.30.10.10) is running: reusing it" in capsys.readouterr().out


def test_a_stopped_container_is_started(inventories, fake_docker):
    calls = fake_docker({})
    existing = {"morpheus-local": ("exited", "single")}
    containers.ensure_containers(inventories["single"], "single", DEFAULT_PORTS, existing)
    assert calls == [("start", "morpheus-local")]


def test_a_missing_container_gets_its_volumes_then_is_run(inventories, fake_docker, capsys):
    calls = fake_docker({})
    inventory = inventories["single"]
    containers.ensure_containers(inventory, "single", DEFAULT_PORTS, {})
    assert calls[0] == (
        "volume",
        *("create", "--label", "org.morpheus.local=1", "morpheus-local-docker"),
    )
    assert list(calls[1]) == containers.run_args(
        inventory, inventory.hosts[0], "single", DEFAULT_PORTS
    )
    out = capsys.readouterr().out
    assert "creating morpheus-local (172.30.10.10, publishes 127.0.0.1:443->443" in out


def test_a_failed_docker_run_names_the_image_and_the_address(inventories, fake_docker):
    fake_docker({"run --detach": (125, "", "Address already in use")})
    with pytest.raises(LocalError, match="Address already in use") as caught:
        containers.ensure_containers(inventories["single"], "single", DEFAULT_PORTS, {})
    assert "morpheus/fleet:bookworm" in caught.value.hint
    assert "172.30.10.10" in caught.value.hint


def test_a_failed_start_says_how_to_start_over(inventories, fake_docker):
    fake_docker({"start": (1, "", "cannot start")})
    existing = {"morpheus-local": ("exited", "single")}
    with pytest.raises(LocalError, match="cannot start") as caught:
        containers.ensure_containers(inventories["single"], "single", DEFAULT_PORTS, existing)
    assert "make down" in caught.value.hint


def test_a_failed_volume_creation_stops_before_the_container(inventories, fake_docker):
    calls = fake_docker({"volume create": (1, "", "no space left on device")})
    with pytest.raises(LocalError, match="no space left on device"):
        containers.ensure_containers(inventories["single"], "single", DEFAULT_PORTS, {})
    assert not any(c[0] == "run" for c in calls)


def test_an_inventory_without_an_edge_names_the_group(fake_docker):
    fake_docker({})  # no local container (whatever this machine runs)
    inventory = Inventory("inv", [], {})
    with pytest.raises(LocalError, match="inv has no host in group edge"):
        containers.preflight(inventory, "single", DEFAULT_PORTS)


# --- waiting for systemd -----------------------------------------------------------------


def test_a_degraded_system_counts_as_booted(fake_docker):
    fake_docker({"is-system-running": "degraded\n"})
    assert containers.wait_for_systemd("c", timeout=5) == "degraded"


def test_a_system_that_never_boots_shows_the_failed_units(fake_docker):
    fake_docker({"is-system-running": "maintenance\n", "--failed": "pebble.service failed\n"})
    with pytest.raises(LocalError) as caught:
        containers.wait_for_systemd("morpheus-local-db", timeout=0.2)
    assert "maintenance" in str(caught.value)
    assert "pebble.service failed" in str(caught.value)
    assert "morpheus-local-db" in caught.value.hint
