"""`status`: the local containers, their addresses, and whether the edge answers."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from . import process
from .containers import local_containers, published_ports
from .hosts import LAYOUTS, host_vars, load_inventory
from .network import NETWORK
from .output import url_lines
from .paths import CA_FILE, shown_path


def probe_edge(
    domain: str, https_port: int, cafile: Path = CA_FILE, timeout: float = 5, address="127.0.0.1"
) -> str:
    """GET https://app.<domain>/ at 127.0.0.1 (curl --resolve): the status line, or why not."""
    server = f"app.{domain}"
    host_header = server if https_port == 443 else f"{server}:{https_port}"
    request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
    if cafile.exists():
        try:
            context = ssl.create_default_context(cafile=str(cafile))
        except ssl.SSLError as error:
            return f"cannot be checked: {shown_path(cafile)} is no CA certificate ({error})"
        how = f"verified with {shown_path(cafile)}"
    else:
        context = ssl._create_unverified_context()  # noqa: S323 - no local CA copied yet
        how = "not verified: no local CA file yet"
    try:
        with (
            socket.create_connection((address, https_port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server) as tls,
        ):
            tls.sendall(request.encode())
            status_line = tls.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    except (OSError, ssl.SSLError) as error:
        return f"does not answer ({error})"
    if not status_line.startswith("HTTP/"):
        return f"does not answer HTTP ({status_line[:60]!r})"
    return f"answers {status_line} ({how})"


def status() -> None:
    if not process.docker_answers():
        print("docker engine: not answering (make up starts it)")
        return
    containers = local_containers()
    if not containers:
        print("local platform: not running (make up starts it)")
        return
    layouts = sorted({layout for _, layout in containers.values()})
    print(f"local platform: layout {', '.join(layouts)}")
    for name in sorted(containers):
        state, _ = containers[name]
        inspect = process.docker(
            "container",
            "inspect",
            "--format",
            f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}',
            name,
        )
        address = inspect.stdout.strip() or "-"
        print(f"  {name:<26} {state:<10} {address}")
    if len(layouts) != 1 or layouts[0] not in LAYOUTS:
        return
    inventory = load_inventory(layouts[0])
    edge = inventory.first("edge")
    if containers.get(edge.name, ("", ""))[0] != "running":
        print(f"edge: {edge.name} is not running")
        return
    ports = published_ports(edge.name)
    domain = host_vars(inventory, edge).get("nginx_domain") or "morpheus.localhost"
    https_port = ports.get(443, 443)
    print(f"edge: {url_lines(domain, https_port)[0]} {probe_edge(domain, https_port)}")
