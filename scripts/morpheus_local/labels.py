"""The label on everything `up` creates, and removing exactly what carries it (`down`)."""

from __future__ import annotations

from . import process
from .errors import LocalError
from .output import say

LABEL = "org.morpheus.local"
LAYOUT_LABEL = f"{LABEL}.layout"
SELECTOR = f"{LABEL}=1"


def listed(*args: str) -> list[str]:
    return [line for line in process.docker(*args).stdout.split() if line]


def remove_labelled(selector: str) -> list[str]:
    """Remove the containers, volumes and networks carrying `selector` (key=value)."""
    removed = []
    kinds = [
        ("container", ["ps", "--all"], "{{.Names}}", ["rm", "--force", "--volumes"]),
        ("volume", ["volume", "ls"], "{{.Name}}", ["volume", "rm", "--force"]),
        ("network", ["network", "ls"], "{{.Name}}", ["network", "rm"]),
    ]
    for kind, listing, name_format, remove in kinds:
        for name in listed(*listing, "--filter", f"label={selector}", "--format", name_format):
            result = process.docker(*remove, name)
            if result.returncode != 0:
                raise LocalError(
                    f"`docker {' '.join(remove)} {name}` failed: {result.stderr.strip()}",
                    "see `docker ps -a` for what still uses it, then rerun `make down`.",
                )
            say(f"removed {kind} {name}")
            removed.append(f"{kind} {name}")
    return removed
