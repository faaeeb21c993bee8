"""Alert drills: the platform's own rules, Prometheus and Alertmanager, broken the way
production breaks, and each notification received by a real webhook receiver on the
host (alertmanager_receivers in host_vars; short scrape and group intervals).

A drill sets the `for` of the rules it breaks to DRILL_FOR on the host, and puts the
files back after: the drill proves that the expressions fire on a real breakage and
that their notifications arrive, and the rules' unit tests (promtool, `*.test.yml`)
prove each `for`. Waiting out the real 5 minutes would prove nothing more. The site-wide
check-mode run that follows the drills finds any rule file left changed.

- Redis stopped: RedisDown arrives, then its resolved message once Redis is back.
- Every worker stopped while a comic waits: QueueJobsWithoutWorkers arrives.
- One public name resolved to an address that does not answer: ProbeFailing arrives
  for that name only.

Each drill restores what it broke and waits for the resolved message; the comic the
worker drill queued is then drawn. The delays are printed and kept in
.cache/reports/drills.txt.
"""

import contextlib
import json
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT, wait_for
from site_checks import (
    DOMAIN,
    drill_key,
    prometheus_api,
    promql,
    submit,
    wait_until_finished,
)

pytestmark = pytest.mark.drill

WEBHOOK = Path(__file__).resolve().parent.parent.parent / "monitoring" / "files" / "webhook.py"
POSTS = "/root/drill-webhook.jsonl"
FIGURES = PROJECT / ".cache" / "reports" / "drills.txt"
BROKEN_NAME = f"dashboard.{DOMAIN}"
PROBE = f"https://{BROKEN_NAME}/login"  # its blackbox target (group_vars)
# An address that never answers (TEST-NET-1, RFC 5737).
NOWHERE = "192.0.2.1"
HOSTS_MARK = "# alert drill"
HOSTS_COPY = "/root/hosts.before-drill"
DRILL_FOR = 15  # seconds
RULES_COPY = "/root/rules.before-drill"


def say(message: str) -> None:
    print(f"drill: {message}", file=sys.stderr)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(f"{time.strftime('%H:%M:%S')} platform: {message}\n")


def now(host) -> float:
    return float(host.run("date +%s.%N").stdout)


def posts(host) -> list[dict]:
    out = host.run(f"cat {POSTS}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def notification(host, alertname: str, status: str, after: float, **labels: str):
    """The first notification of `alertname` in `status` received after `after`."""
    for post in posts(host):
        if post["received"] <= after:
            continue
        for alert in post["body"]["alerts"]:
            if (
                alert["labels"]["alertname"] == alertname
                and alert["status"] == status
                and all(alert["labels"].get(k) == v for k, v in labels.items())
            ):
                return post
    return None


@pytest.fixture(scope="module", autouse=True)
def webhook(host):
    """The drill's receiver, as a transient unit: every POST appended to POSTS."""
    host.run(f"cat > /root/drill-webhook.py <<'EOF'\n{WEBHOOK.read_text()}\nEOF")
    host.run(f"rm -f {POSTS}")
    started = host.run(
        "systemd-run --unit=drill-webhook --property=Restart=on-failure "
        f"/usr/bin/python3 /root/drill-webhook.py {POSTS}"
    )
    assert started.rc == 0, started.stderr
    wait_for("the webhook to listen", lambda: host.socket("tcp://127.0.0.1:9999").is_listening, 30)
    yield
    host.run("systemctl stop drill-webhook; rm -f /root/drill-webhook.py")


def with_for(text: str, alertnames: set[str], seconds: int) -> str:
    """A rule file's text with the `for:` of each alert in `alertnames` set to `seconds`."""
    lines, alert = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            alert = stripped.split(":", 1)[1].strip()
        elif alert in alertnames and stripped.startswith("for:"):
            line = f"{line[: line.index('for:')]}for: {seconds}s"
        lines.append(line)
    return "\n".join(lines) + "\n"


def alert_rules(host, alertnames: set[str]) -> list[tuple[str, str, float]]:
    """(file, name, `for` in seconds) of each alert in `alertnames`, as Prometheus
    evaluates it now."""
    groups = prometheus_api(host, "/api/v1/rules?type=alert")["groups"]
    return [
        (g["file"], r["name"], r["duration"])
        for g in groups
        for r in g["rules"]
        if r["name"] in alertnames
    ]


def durations(host, alertnames: set[str]) -> dict[str, float]:
    return {name: seconds for _, name, seconds in alert_rules(host, alertnames)}


@contextlib.contextmanager
def drill_for(host, *alertnames: str):
    """The drilled rules with a `for` of DRILL_FOR seconds, then their own again."""
    names = set(alertnames)
    rules = alert_rules(host, names)
    files = {path for path, _, _ in rules}
    own = {name: seconds for _, name, seconds in rules}
    assert set(own) == names, f"no such rules: {names - set(own)}"
    host.check_output(f"mkdir -p {RULES_COPY} && cp -p {' '.join(files)} {RULES_COPY}/")
    try:
        for path in files:
            text = with_for(host.check_output(f"cat {path}"), names, DRILL_FOR)
            # Rewritten in place: the file keeps its owner and mode.
            host.check_output(f"cat > {path} <<'EOF'\n{text}EOF")
        host.check_output("systemctl reload prometheus")
        wait_for(
            f"the drill's `for` of {DRILL_FOR} s",
            lambda: durations(host, names) == dict.fromkeys(names, DRILL_FOR),
            30,
        )
        yield own
    finally:
        for path in files:
            host.check_output(f"cat {RULES_COPY}/{Path(path).name} > {path}")
        host.check_output(f"rm -r {RULES_COPY} && systemctl reload prometheus")
    wait_for("the rules' own `for`", lambda: durations(host, names) == own, 30)


def test_the_drill_receiver_is_alertmanager_s(host):
    config = host.file("/etc/prometheus/alertmanager.yml").content_string
    assert "http://127.0.0.1:9999/hook" in config


def assert_not_firing(host, *alertnames: str) -> None:
    """A drill starts from a platform where its alerts are quiet, or it proves nothing."""
    firing = promql(host, 'ALERTS{alertstate="firing"}')
    names = {a["metric"]["alertname"] for a in firing}
    assert not names & set(alertnames), f"already firing before the drill: {firing}"


def test_redis_down_alerts_and_resolves(host):
    assert [r["value"][1] for r in promql(host, "redis_up")] == ["1"]
    assert_not_firing(host, "RedisDown")
    with drill_for(host, "RedisDown") as own:
        stopped = now(host)
        host.run("systemctl stop redis-server")
        try:
            fired = wait_for(
                "RedisDown", lambda: notification(host, "RedisDown", "firing", stopped), 120
            )
        finally:
            started = now(host)
            host.run("systemctl start redis-server")
        resolved = wait_for(
            "RedisDown resolved",
            lambda: notification(host, "RedisDown", "resolved", started),
            120,
        )
    (alert,) = [a for a in fired["body"]["alerts"] if a["labels"]["alertname"] == "RedisDown"]
    assert alert["labels"]["severity"] == "page"
    assert fired["body"]["receiver"] == "page"
    say(
        f"RedisDown (for {DRILL_FOR} s in the drill, {own['RedisDown']:.0f} s its own) "
        f"notified {fired['received'] - stopped:.0f} s after Redis stopped, resolved "
        f"{resolved['received'] - started:.0f} s after it started"
    )


@pytest.fixture()
def api_key(host):
    with drill_key(host) as name:
        yield name


# Rewritten in place: /etc/hosts is a bind mount in the instance, never replaced.
REPOINT = """
import sys
name, address, mark = sys.argv[1:]
kept = []
for line in open("/etc/hosts").read().splitlines():
    words = line.split()
    if words and not words[0].startswith("#") and name in words[1:]:
        words.remove(name)
        line = " ".join(words)
    kept.append(line)
kept.append(f"{address} {name} {mark}")
with open("/etc/hosts", "w") as hosts:
    hosts.write("\\n".join(kept) + "\\n")
"""


def point_elsewhere(host, name: str, address: str) -> None:
    """Resolve `name` to `address` on the host (a copy of /etc/hosts kept to restore)."""
    assert host.run(f"cp /etc/hosts {HOSTS_COPY}").rc == 0
    moved = host.run(f"python3 - '{name}' '{address}' '{HOSTS_MARK}' <<'EOF'\n{REPOINT}\nEOF")
    assert moved.rc == 0, moved.stderr
    assert host.run(f"getent hosts {name}").stdout.split()[0] == address


def workers(host) -> list[str]:
    names = host.run("docker ps --filter label=org.morpheus.role=worker --format '{{.Names}}'")
    return names.stdout.split()


def test_no_worker_and_a_failing_probe_alert(host, api_key):
    """Both drills at once."""
    stopped_workers = workers(host)
    assert stopped_workers, "no worker runs"
    assert_not_firing(host, "QueueJobsWithoutWorkers", "ProbeFailing")
    comics: list[str] = []
    with drill_for(host, "QueueJobsWithoutWorkers", "ProbeFailing") as own:
        # An idle worker stops at once (a busy one would drain its job first).
        assert host.run(f"docker stop {' '.join(stopped_workers)}").rc == 0
        broken = now(host)
        try:
            comics = submit(host, count=1, title="Alert drill comic")
            point_elsewhere(host, BROKEN_NAME, NOWHERE)
            no_worker = wait_for(
                "QueueJobsWithoutWorkers",
                lambda: notification(host, "QueueJobsWithoutWorkers", "firing", broken),
                180,
            )
            probe = wait_for(
                "ProbeFailing",
                lambda: notification(host, "ProbeFailing", "firing", broken),
                180,
            )
            failing = {r["metric"]["instance"] for r in promql(host, "probe_success == 0")}
            assert failing == {PROBE}, failing
        finally:
            restored = now(host)
            restored_at = time.monotonic()
            host.run(f"cat {HOSTS_COPY} > /etc/hosts && rm -f {HOSTS_COPY}")
            host.run(f"docker start {' '.join(stopped_workers)}")
        assert HOSTS_MARK not in host.file("/etc/hosts").content_string
        probe_alerts = [
            a for a in probe["body"]["alerts"] if a["labels"]["alertname"] == "ProbeFailing"
        ]
        assert {a["labels"]["instance"] for a in probe_alerts} == {PROBE}
        wait_for(
            "QueueJobsWithoutWorkers resolved",
            lambda: notification(host, "QueueJobsWithoutWorkers", "resolved", restored),
            120,
        )
        wait_for(
            "ProbeFailing resolved",
            lambda: notification(host, "ProbeFailing", "resolved", restored),
            120,
        )
    wait_until_finished(host, comics)
    drawn = time.monotonic() - restored_at
    say(
        f"QueueJobsWithoutWorkers (for {DRILL_FOR} s in the drill, "
        f"{own['QueueJobsWithoutWorkers']:.0f} s its own) notified "
        f"{no_worker['received'] - broken:.0f} s after every worker stopped with a comic "
        f"waiting; ProbeFailing (for {DRILL_FOR} s, {own['ProbeFailing']:.0f} s its own) "
        f"{probe['received'] - broken:.0f} s after {BROKEN_NAME} stopped answering; both "
        f"resolved after the restore, and the waiting comic was drawn within {drawn:.0f} s of it"
    )
