"""Unit tests of scripts/local, the local default: what `make up` creates and `make down` removes.

The inventories are read with the real ansible-inventory; `down`'s selection runs
against the real Docker engine when one answers (on throwaway objects with a label
of their own, so a running local platform is never touched).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import uuid

import pytest
from test_harness import load

local = load("local")

CAPS = {"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE", "SYS_CHROOT", "MKNOD"}
CAPS |= {"AUDIT_WRITE", "SETFCAP"}
DEFAULT_PORTS = {443: 443, 80: 80}


def pairs(args: list[str], flag: str) -> list[str]:
    """Every value given to `flag` in a docker argument list."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the inventories, read with the real ansible-inventory -------------------------


@pytest.fixture(scope="module")
def inventories() -> dict[str, object]:
    if not (local.BIN / "ansible-inventory").exists():
        pytest.skip("no .venv/bin/ansible-inventory: run `make setup`")
    return {layout: local.load_inventory(layout) for layout in local.LAYOUTS}


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
    }
    groups = {h.name: h.groups for h in inventory.hosts}
    assert {"edge", "acme"} <= groups["morpheus-local-edge"]
    assert {"postgres", "redis"} <= groups["morpheus-local-db"]
    assert "api" in groups["morpheus-local-api-2"]
    assert "workers" in groups["morpheus-local-worker-1"]
    assert "edge" not in groups["morpheus-local-api-1"]
    assert inventory.first("edge").name == "morpheus-local-edge"
    assert inventory.groups["api"] == ["morpheus-local-api-1", "morpheus-local-api-2"]


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
    inventory = local.parse_inventory("inv", data)
    assert inventory.hosts[0].groups == frozenset({"local", "edge", "front"})
    assert inventory.first("front").name == "a"


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"a": {}}, "has no morpheus_private_address"),
        ({"a": {"morpheus_private_address": "10.0.0.5"}}, "is not in 172.30.10.0/24"),
        ({"a": {"morpheus_private_address": "not-an-ip"}}, "is not in 172.30.10.0/24"),
    ],
)
def test_a_host_without_a_local_address_is_refused(hostvars, message):
    with pytest.raises(local.LocalError, match=message):
        local.parse_inventory("inv", listing(hostvars, edge={"hosts": ["a"]}))


def test_two_hosts_on_one_address_are_refused():
    same = {"morpheus_private_address": "172.30.10.20"}
    data = listing({"a": same, "b": same}, edge={"hosts": ["a", "b"]})
    with pytest.raises(local.LocalError, match="share one morpheus_private_address"):
        local.parse_inventory("inv", data)


def test_an_inventory_without_an_edge_host_says_so():
    data = listing({"a": {"morpheus_private_address": "172.30.10.20"}}, api={"hosts": ["a"]})
    with pytest.raises(local.LocalError, match="no host in group edge"):
        local.parse_inventory("inv", data).first("edge")


# --- the docker run arguments --------------------------------------------------------


def test_container_args_of_the_single_host(inventories):
    inventory = inventories["single"]
    host = inventory.hosts[0]
    args = local.run_args(inventory, host, "single", DEFAULT_PORTS)
    assert args[:2] == ["run", "--detach"]
    assert args[-2:] == ["morpheus/systemd:bookworm", "/lib/systemd/systemd"]
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
        h.name: local.run_args(inventory, h, "multihost", DEFAULT_PORTS) for h in inventory.hosts
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
    assert local.volumes_of(host, "single") == [("morpheus-local-docker", "/var/lib/docker")]


def test_other_host_ports_are_published_to_the_edge_ports(inventories):
    inventory = inventories["single"]
    args = local.run_args(inventory, inventory.hosts[0], "single", {443: 8443, 80: 8080})
    assert pairs(args, "--publish") == ["127.0.0.1:8443:443", "127.0.0.1:8080:80"]


# --- ports -----------------------------------------------------------------------------


def test_ports_default_to_443_and_80():
    assert local.requested_ports({}) == {443: 443, 80: 80}


def test_ports_come_from_the_environment():
    environ = {"MORPHEUS_LOCAL_HTTPS_PORT": "8443", "MORPHEUS_LOCAL_HTTP_PORT": "8080"}
    assert local.requested_ports(environ) == {443: 8443, 80: 8080}


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MORPHEUS_LOCAL_HTTPS_PORT": "https"}, "MORPHEUS_LOCAL_HTTPS_PORT"),
        ({"MORPHEUS_LOCAL_HTTP_PORT": "70000"}, "MORPHEUS_LOCAL_HTTP_PORT"),
        ({"MORPHEUS_LOCAL_HTTPS_PORT": "8080", "MORPHEUS_LOCAL_HTTP_PORT": "8080"}, "both"),
    ],
)
def test_bad_ports_are_refused(environ, variable):
    with pytest.raises(local.LocalError, match=variable):
        local.requested_ports(environ)


def test_a_taken_https_port_names_the_variable_to_set():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(local.LocalError) as caught:
            local.check_ports_free({443: port, 80: free_port()})
    assert f"port {port}" in str(caught.value)
    assert "MORPHEUS_LOCAL_HTTPS_PORT" in caught.value.hint


def test_a_taken_http_port_names_its_own_variable():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(local.LocalError) as caught:
            local.check_ports_free({443: free_port(), 80: taken.getsockname()[1]})
    assert "MORPHEUS_LOCAL_HTTP_PORT" in caught.value.hint
    assert "MORPHEUS_LOCAL_HTTPS_PORT" not in caught.value.hint


def test_free_ports_pass():
    local.check_ports_free({443: free_port(), 80: free_port()})


# --- what `up` prints --------------------------------------------------------------------


def test_urls_on_port_443_have_no_port():
    assert local.url_lines("morpheus.localhost", 443) == [
        "https://app.morpheus.localhost/",
        "https://dashboard.morpheus.localhost/",
        "https://api.morpheus.localhost/",
    ]


def test_urls_on_another_port_carry_it():
    assert local.url_lines("morpheus.localhost", 8443) == [
        "https://app.morpheus.localhost:8443/",
        "https://dashboard.morpheus.localhost:8443/",
        "https://api.morpheus.localhost:8443/",
    ]


def test_summary_prints_the_urls_the_ca_and_the_login(inventories, monkeypatch):
    variables = {
        "nginx_domain": "example.localhost",
        "morpheus_admin_username": "admin",
        "vault_morpheus_admin_password": "local-only-admin",  # test-only value
    }
    monkeypatch.setattr(local, "host_vars", lambda inventory, host: variables)
    text = "\n".join(local.summary(inventories["single"], {443: 8443, 80: 8080}, 75))
    assert "https://dashboard.example.localhost:8443/" in text
    assert "curl --cacert .cache/local/ca.pem https://app.example.localhost:8443/" in text
    assert "/usr/local/share/ca-certificates/morpheus-local.crt" in text
    assert "username:  admin" in text
    assert "password:  local-only-admin" in text
    assert "1 min 15 s" in text


def test_summary_says_where_prometheus_answers_with_a_monitoring_host(inventories, monkeypatch):
    monkeypatch.setattr(local, "host_vars", lambda inventory, host: {})
    inventory = inventories["single"]
    monitored = local.Inventory(
        path=inventory.path,
        hosts=inventory.hosts,
        groups={**inventory.groups, "monitoring": [inventory.hosts[0].name]},
    )
    text = "\n".join(local.summary(monitored, DEFAULT_PORTS, 5))
    assert "Prometheus:    http://172.30.10.10:9090/" in text
    assert "Alertmanager:  http://172.30.10.10:9093/" in text


def test_summary_has_no_monitoring_lines_without_a_monitoring_host(inventories, monkeypatch):
    monkeypatch.setattr(local, "host_vars", lambda inventory, host: {})
    inventory = inventories["multihost"]
    assert not inventory.groups.get("monitoring")
    assert "Prometheus" not in "\n".join(local.summary(inventory, DEFAULT_PORTS, 5))


def test_summary_says_which_login_variable_is_missing(inventories, monkeypatch):
    monkeypatch.setattr(local, "host_vars", lambda inventory, host: {})
    text = "\n".join(local.summary(inventories["single"], DEFAULT_PORTS, 5))
    assert "https://app.morpheus.localhost/" in text
    assert "not set: morpheus_admin_username in inventories/local" in text
    assert "not set: vault_morpheus_admin_password in inventories/local" in text


# --- existing containers -----------------------------------------------------------------


def test_docker_ps_listing_is_parsed():
    text = "morpheus-local-edge\trunning\tmultihost\nmorpheus-local-db\texited\tmultihost\n\n"
    assert local.parse_ps(text) == {
        "morpheus-local-edge": ("running", "multihost"),
        "morpheus-local-db": ("exited", "multihost"),
    }


def test_containers_of_the_same_layout_are_accepted():
    local.check_layout({"morpheus-local": ("exited", "single")}, "single")


def test_containers_of_the_other_layout_ask_for_make_down():
    with pytest.raises(local.LocalError) as caught:
        local.check_layout({"morpheus-local": ("running", "single")}, "multihost")
    assert "morpheus-local" in str(caught.value)
    assert "make down" in caught.value.hint


# --- waiting for systemd -----------------------------------------------------------------


def fake_docker(answers: dict[str, str], calls: list[tuple[str, ...]] | None = None):
    """A docker() stand-in: the first answer whose key is in the command line."""

    def docker(*args, timeout=None):
        if calls is not None:
            calls.append(args)
        line = " ".join(args)
        out = next((text for key, text in answers.items() if key in line), "")
        return subprocess.CompletedProcess(["docker", *args], 0, out, "")

    return docker


def test_a_degraded_system_counts_as_booted(monkeypatch):
    monkeypatch.setattr(local, "docker", fake_docker({"is-system-running": "degraded\n"}))
    assert local.wait_for_systemd("c", timeout=5) == "degraded"


def test_a_system_that_never_boots_shows_the_failed_units(monkeypatch):
    answers = {"is-system-running": "maintenance\n", "--failed": "pebble.service failed\n"}
    monkeypatch.setattr(local, "docker", fake_docker(answers))
    with pytest.raises(local.LocalError) as caught:
        local.wait_for_systemd("morpheus-local-db", timeout=0.2)
    assert "maintenance" in str(caught.value)
    assert "pebble.service failed" in str(caught.value)
    assert "morpheus-local-db" in caught.value.hint


# --- down: only what carries the label -----------------------------------------------------


def test_down_lists_by_label_and_removes_only_what_is_listed(monkeypatch):
    calls: list[tuple[str, ...]] = []
    answers = {
        "ps --all": "morpheus-local\n",
        "volume ls": "morpheus-local-docker\n",
        "network ls": "morpheus-local\n",
    }
    monkeypatch.setattr(local, "docker", fake_docker(answers, calls))
    removed = local.remove_labelled(local.SELECTOR)
    assert removed == [
        "container morpheus-local",
        "volume morpheus-local-docker",
        "network morpheus-local",
    ]
    listings = [c for c in calls if "--filter" in c]
    assert len(listings) == 3
    assert all("label=org.morpheus.local=1" in c for c in listings)
    removals = [c for c in calls if "--filter" not in c]
    assert [c[-1] for c in removals] == [
        "morpheus-local",
        "morpheus-local-docker",
        "morpheus-local",
    ]
    assert [c[0] for c in removals] == ["rm", "volume", "network"]


def test_down_with_nothing_there_removes_nothing(monkeypatch):
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(local, "docker", fake_docker({}, calls))
    assert local.remove_labelled(local.SELECTOR) == []
    assert all("--filter" in c for c in calls)


@pytest.fixture
def engine():
    if shutil.which("docker") is None or not local.docker_answers():
        print("no Docker engine answers: `make harness` starts one")
        pytest.skip("no Docker engine answers (`make harness` starts one)")


def test_down_removes_labelled_objects_and_leaves_the_rest(engine):
    token = uuid.uuid4().hex[:10]
    key = "org.morpheus.local.test"
    names = {kind: f"morpheus-test-{token}-{kind}" for kind in ("ours", "unlabelled", "other")}
    try:
        for kind, labels in (("ours", [token]), ("unlabelled", []), ("other", ["other"])):
            flags = [f for value in labels for f in ("--label", f"{key}={value}")]
            subprocess.run(["docker", "network", "create", *flags, names[kind]], check=True)
        subprocess.run(
            ["docker", "volume", "create", "--label", f"{key}={token}", names["ours"]],
            check=True,
            capture_output=True,
        )
        removed = local.remove_labelled(f"{key}={token}")
        assert sorted(removed) == [f"network {names['ours']}", f"volume {names['ours']}"]
        networks = subprocess.run(
            ["docker", "network", "ls", "--format", "{{.Name}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert names["ours"] not in networks
        assert names["unlabelled"] in networks
        assert names["other"] in networks
        assert local.remove_labelled(f"{key}={token}") == []
    finally:
        for name in names.values():
            subprocess.run(["docker", "network", "rm", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", names["ours"]], capture_output=True)


# --- status: the edge probe --------------------------------------------------------------------


def new_ca(name: str, subject: str) -> list[str]:
    """openssl arguments that make a self-signed CA: <name>.pem and <name>.key."""
    return [
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", subject),
    ]


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 for app.example.localhost, and the CA that signed it."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test certificate")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl(*new_ca("ca", "/CN=test CA"))
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr"),
        *("-subj", "/CN=app.example.localhost"),
    )
    (tmp_path / "ext").write_text("subjectAltName=DNS:app.example.localhost\n")
    openssl(
        *("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "1", "-extfile", "ext", "-out", "leaf.pem"),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve():
        try:
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as tls:
                seen.append(tls.recv(4096))
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], tmp_path / "ca.pem", seen
    listener.close()
    thread.join(timeout=5)


def test_the_edge_probe_verifies_with_the_local_ca(tls_server):
    port, ca, seen = tls_server
    answer = local.probe_edge("example.localhost", port, cafile=ca)
    assert answer.startswith("answers HTTP/1.1 200 OK (verified with")
    assert f"Host: app.example.localhost:{port}" in seen[0].decode()


def test_the_edge_probe_refuses_a_certificate_of_another_ca(tls_server, tmp_path):
    port, _, _ = tls_server
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        ["openssl", *new_ca("ca", "/CN=another CA")],
        cwd=other,
        check=True,
        capture_output=True,
    )
    answer = local.probe_edge("example.localhost", port, cafile=other / "ca.pem")
    assert answer.startswith("does not answer")
    assert "CERTIFICATE_VERIFY_FAILED" in answer


def test_the_edge_probe_reports_nothing_listening(tmp_path):
    answer = local.probe_edge("example.localhost", free_port(), cafile=tmp_path / "absent.pem")
    assert answer.startswith("does not answer")


# --- the command line --------------------------------------------------------------------------


def test_failures_print_error_and_next(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(local, "BIN", tmp_path)
    assert local.main(["up"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and "ansible-playbook is missing" in err[0]
    assert err[1] == "next: run `make setup` first."


def test_the_layout_must_be_known(capsys):
    with pytest.raises(SystemExit):
        local.main(["up", "--layout", "cloud"])
    assert "invalid choice" in capsys.readouterr().err


def test_every_layout_names_an_inventory_with_hosts_yml():
    assert set(local.LAYOUTS) == {"single", "multihost"}
    for path in local.LAYOUTS.values():
        assert (local.ROOT / path / "hosts.yml").is_file(), path
