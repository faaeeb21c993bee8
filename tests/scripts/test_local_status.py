"""morpheus_local.status: what `make status` prints, and the edge probe behind it."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading

import pytest
from morpheus_local import status

ADDRESS = '{{(index .NetworkSettings.Networks "morpheus-local").IPAddress}}'


# --- the edge probe ----------------------------------------------------------------------


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
    answer = status.probe_edge("example.localhost", port, cafile=ca)
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
    answer = status.probe_edge("example.localhost", port, cafile=other / "ca.pem")
    assert answer.startswith("does not answer")
    assert "CERTIFICATE_VERIFY_FAILED" in answer


def test_the_edge_probe_without_a_ca_file_says_it_did_not_verify(tls_server, tmp_path):
    port, _, _ = tls_server
    answer = status.probe_edge("example.localhost", port, cafile=tmp_path / "absent.pem")
    assert answer == "answers HTTP/1.1 200 OK (not verified: no local CA file yet)"


def test_a_ca_file_that_is_no_certificate_is_named(tmp_path, free_port):
    broken = tmp_path / "ca.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    answer = status.probe_edge("example.localhost", free_port(), cafile=broken)
    assert answer.startswith(f"cannot be checked: {broken} is no CA certificate")


def test_the_edge_probe_reports_nothing_listening(tmp_path, free_port):
    answer = status.probe_edge("example.localhost", free_port(), cafile=tmp_path / "absent.pem")
    assert answer.startswith("does not answer")


# --- what status prints --------------------------------------------------------------------


def test_no_engine_says_make_up_starts_it(fake_docker, capsys):
    fake_docker({"info": (1, "", "Cannot connect to the Docker daemon")})
    status.status()
    assert capsys.readouterr().out == "docker engine: not answering (make up starts it)\n"


def test_nothing_labelled_says_the_platform_is_not_running(fake_docker, capsys):
    fake_docker({})
    status.status()
    assert capsys.readouterr().out == "local platform: not running (make up starts it)\n"


def test_containers_of_two_layouts_are_listed_without_an_edge_check(fake_docker, capsys):
    calls = fake_docker(
        {
            "ps --all": "morpheus-local\texited\tsingle\nmorpheus-local-db\trunning\tmultihost\n",
            "inspect --format": "172.30.10.15\n",
        }
    )
    status.status()
    assert capsys.readouterr().out.splitlines() == [
        "local platform: layout multihost, single",
        f"  {'morpheus-local':<26} {'exited':<10} 172.30.10.15",
        f"  {'morpheus-local-db':<26} {'running':<10} 172.30.10.15",
    ]
    assert ("container", "inspect", "--format", ADDRESS, "morpheus-local") in calls


def test_a_stopped_edge_is_named(inventories, fake_docker, capsys):
    fake_docker({"ps --all": "morpheus-local\texited\tsingle\n"})
    status.status()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"  {'morpheus-local':<26} {'exited':<10} -"
    assert lines[-1] == "edge: morpheus-local is not running"


def test_a_running_edge_is_probed_on_its_published_port(
    inventories, fake_docker, capsys, free_port
):
    port = free_port()
    bindings = {"443/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    fake_docker(
        {
            "ps --all": "morpheus-local\trunning\tsingle\n",
            "PortBindings": json.dumps(bindings),
            "inspect --format": "172.30.10.10\n",
        }
    )
    status.status()
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"edge: https://app.morpheus.localhost:{port}/ does not answer (")
