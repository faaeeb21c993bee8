"""The host ports the edge's 443 and 80 are published on, and whether they are free."""

from __future__ import annotations

import errno
import os
import socket

from .errors import LocalError

PORT_VARIABLES = {443: "MORPHEUS_LOCAL_HTTPS_PORT", 80: "MORPHEUS_LOCAL_HTTP_PORT"}


def requested_ports(environ: dict[str, str] | None = None) -> dict[int, int]:
    """Container port -> host port, from MORPHEUS_LOCAL_HTTPS_PORT / _HTTP_PORT."""
    environ = os.environ if environ is None else environ
    ports = {}
    for container_port, variable in PORT_VARIABLES.items():
        value = environ.get(variable, "") or str(container_port)
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise LocalError(
                f"{variable}={value!r} is not a port number",
                f"set {variable} to a free port between 1 and 65535 (or unset it).",
            )
        ports[container_port] = int(value)
    if ports[443] == ports[80]:
        raise LocalError(
            f"MORPHEUS_LOCAL_HTTPS_PORT and MORPHEUS_LOCAL_HTTP_PORT are both {ports[443]}",
            "give them different ports.",
        )
    return ports


def check_ports_free(ports: dict[int, int], address: str = "127.0.0.1") -> None:
    """Fail early, naming the variable to set, when a host port is already taken."""
    for container_port, host_port in ports.items():
        variable = PORT_VARIABLES[container_port]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, host_port))
            except PermissionError as error:
                raise LocalError(
                    f"port {host_port} on {address} needs root to be published",
                    f"run as root, or set {variable} to a port above 1023, e.g. "
                    f"`make up {variable}={host_port + 8000}`.",
                ) from error
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
                raise LocalError(
                    f"port {host_port} on {address} is already taken on this machine "
                    f"(the edge's {'HTTPS' if container_port == 443 else 'HTTP'})",
                    f"stop what listens there (`ss -ltnp 'sport = :{host_port}'`), or set "
                    f"{variable} to a free port, e.g. `make up {variable}={host_port + 8000}`.",
                ) from error
