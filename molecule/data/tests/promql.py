"""Prometheus on morpheus-data-s3 (every rule file, scraping and evaluating every 5 s),
as the drills ask it: instant queries, and waits for a series or an alert."""

import json
import shlex
import time

from conftest import instance

PROMETHEUS = "http://172.30.22.13:9090"
QUERY = (
    "import sys, urllib.parse, urllib.request; "
    f"print(urllib.request.urlopen('{PROMETHEUS}/api/v1/query?query='"
    " + urllib.parse.quote(sys.argv[1]), timeout=10).read().decode())"
)


def query(expr: str) -> list[tuple[dict[str, str], float]]:
    """The instant vector `expr` evaluates to now: (labels, value) per series."""
    result = instance("morpheus-data-s3").run(
        f"python3 -c {shlex.quote(QUERY)} {shlex.quote(expr)}"
    )
    assert result.rc == 0, f"Prometheus did not answer {expr!r}: {result.stderr}"
    return [
        ({k: v for k, v in series["metric"].items() if k != "__name__"}, float(series["value"][1]))
        for series in json.loads(result.stdout)["data"]["result"]
    ]


def value(expr: str) -> float | None:
    """The value of the single series `expr` selects, or None when there is none."""
    series = query(expr)
    assert len(series) <= 1, f"{expr!r} selects {len(series)} series: {series}"
    return series[0][1] if series else None


def wait_for(expr: str, timeout: float, what: str) -> float:
    """Seconds until `expr` selects at least one series; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if query(expr):
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"{what}: {expr!r} selected nothing for {timeout:.0f} s")


def alert(name: str, host: str, state: str = "pending|firing") -> str:
    """The selector of alert `name` about `host`, in `state` (a regular expression)."""
    return f'ALERTS{{alertname="{name}",host="{host}",alertstate=~"{state}"}}'
