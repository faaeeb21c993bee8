"""The durability drills' figures, kept where `make test` keeps its reports."""

import sys
import time

from conftest import PROJECT

FIGURES = PROJECT / ".cache" / "reports" / "durability.txt"


def say(message: str) -> None:
    """Print a measured figure and append it, timed, to .cache/reports/durability.txt."""
    print(f"durability: {message}", file=sys.stderr)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(f"{time.strftime('%H:%M:%S')} data: {message}\n")
