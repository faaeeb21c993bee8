"""What `up` prints: its progress lines and, at the end, where the platform answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .paths import CA_FILE, ROOT

if TYPE_CHECKING:
    from .hosts import Inventory


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def url_lines(domain: str, https_port: int) -> list[str]:
    suffix = "" if https_port == 443 else f":{https_port}"
    return [f"https://{name}.{domain}{suffix}/" for name in ("app", "dashboard", "api")]


def shown(variables: dict, name: str, inventory: Inventory) -> str:
    value = variables.get(name)
    if value is None or value == "":
        return f"(not set: {name} in {inventory.path})"
    if "{{" in str(value):
        return f"{value} (a template: `ansible <host> -m debug -a var={name}` shows it)"
    return str(value)


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def summary(
    inventory: Inventory, variables: dict, ports: dict[int, int], seconds: float
) -> list[str]:
    """The closing lines of `up`; `variables` are the edge host's inventory variables."""
    domain = variables.get("nginx_domain") or "morpheus.localhost"
    ca = CA_FILE.relative_to(ROOT)
    app_url = url_lines(domain, ports[443])[0]
    return [
        "",
        f"Morpheus runs locally ({inventory.path}); `make up` took {duration(seconds)}:",
        *(f"  {url}" for url in url_lines(domain, ports[443])),
        "",
        f"TLS comes from the local ACME CA, copied to {ca}. Trust it:",
        f"  curl:      curl --cacert {ca} {app_url}",
        "  Chromium:  Settings > Privacy and security > Security > Manage certificates >",
        f"             Authorities > Import {ca} (trust it for websites)",
        "  Firefox:   Settings > Privacy & Security > View Certificates > Authorities >",
        f"             Import {ca} (trust it to identify websites)",
        f"  system:    cp {ca} /usr/local/share/ca-certificates/morpheus-local.crt"
        " && update-ca-certificates",
        "",
        "Dashboard login (test-only values of the local inventory):",
        f"  username:  {shown(variables, 'morpheus_admin_username', inventory)}",
        f"  password:  {shown(variables, 'vault_morpheus_admin_password', inventory)}",
        "",
        *monitoring_lines(inventory),
        "`make status` shows what runs; `make down` removes it all.",
    ]


def monitoring_lines(inventory: Inventory) -> list[str]:
    """Where Prometheus and Alertmanager answer, when the layout has a monitoring host."""
    if not inventory.groups.get("monitoring"):
        return []
    address = inventory.first("monitoring").address
    return [
        "Monitoring (private addresses, reachable from this machine):",
        f"  Prometheus:    http://{address}:9090/  (targets: /targets, alerts: /alerts)",
        f"  Alertmanager:  http://{address}:9093/",
        "",
    ]
