"""Where the checkout, its tools and the files `up` leaves behind are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
CACHE = ROOT / ".cache" / "local"
CA_FILE = CACHE / "ca.pem"
PLAYBOOK_LOG = CACHE / "up.log"
PLAYBOOK = "playbooks/site.yml"


def shown_path(path: Path) -> str:
    """A path as a person reads it: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
