"""Workers that follow the queue, drilled on the worker host: a backlog of comics makes
its autoscaler add workers up to the host's maximum, each a copy of morpheus-worker-0
with the same hardening; once the backlog is gone (a trickle of comics still running)
the surplus ones drain, finish their jobs and go, back to the minimum. Every comic
completes once, at its first attempt.

The scenario's host_vars give the worker host a 20 s cooldown and a round every 2 s, so
the drill takes about two minutes. It leaves the host as it found it (the minimum), and
removes its comics and API keys. Figures go to .cache/reports/drills.txt."""

import json
import math
import time

import pytest
from comics import WORKER_HOST, Submitter, comic_states
from conftest import PROJECT, ansible_playbook, assert_service_up

pytestmark = pytest.mark.drill

testinfra_hosts = [WORKER_HOST]

UNIT = "morpheus-worker-autoscaler"
CONFIG = "/etc/morpheus/worker-autoscaler.conf"
TEMPLATE = "morpheus-worker-0"
BACKLOG = 24
TRICKLE = 12
NOVEL = "\n\n".join(
    f"Chapter {n}\n\nThe ferryman rowed across the grey river at dawn. "
    f'"Nobody crosses for free," he told the girl with the lantern.\n\n'
    "Mist hung over the water. A bell rang on the far bank, twice, and stopped."
    for n in range(1, 4)
)
FIGURES = PROJECT / ".cache" / "reports" / "drills.txt"


def say(message: str) -> None:
    print(f"drill: {message}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(f"{time.strftime('%H:%M:%S')} multihost: {message}\n")


def settings(host) -> dict[str, str]:
    """The agent's settings file, name = value."""
    lines = host.file(CONFIG).content_string.splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def workers(host, present: bool = False) -> list[str]:
    """The worker containers that run; with `present`, those that have stopped but are
    not removed yet too (the autoscaler removes a drained one at its next round)."""
    out = host.check_output(
        f"docker ps {'--all' if present else ''} --filter label=org.morpheus.role=worker "
        "--format '{{.Names}}'"
    )
    return sorted(out.split())


def journal_since(host, since: float) -> list[str]:
    return host.check_output(
        f"journalctl -u {UNIT} --no-pager -o cat --since @{since:.0f}"
    ).splitlines()


@pytest.fixture()
def submitter():
    comics = Submitter()
    yield comics
    comics.clean()


def wait_for_count(host, count: int, timeout: float, present: bool = False) -> float:
    started = time.monotonic()
    while (seen := len(workers(host, present))) != count:
        if time.monotonic() - started > timeout:
            pytest.fail(
                f"{seen} workers, not {count}, after {timeout:.0f} s: {workers(host, True)}\n"
                + "\n".join(journal_since(host, time.time() - timeout)[-30:])
            )
        time.sleep(1)
    return time.monotonic() - started


def follow_logs(host, names: list[str]) -> list[str]:
    """Keep each container's log in a file of the host past its removal; returns the files."""
    files = []
    for name in names:
        log_file = f"/root/autoscale-drill-{name}.log"
        started = host.run(
            f"systemd-run --unit=autoscale-drill-log-{name} --collect sh -c "
            f"'docker logs -f {name} > {log_file} 2>&1'"
        )
        assert started.rc == 0, started.stderr
        files.append(log_file)
    return files


def drains_seen(host, log_file: str) -> tuple[list[str], list[str], list[str]]:
    """From a worker's JSON log: the comics in hand when it began to drain, those it
    finished after that, and the lines that say a job went back to the queue."""
    in_hand, finished, handed_back, draining = [], [], [], False
    for line in host.file(log_file).content_string.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "draining":
            draining, in_hand = True, list(event.get("in_flight") or [])
        elif draining and event.get("event") == "job finished":
            finished.append(event.get("comic_id"))
        elif event.get("event") in ("job moved back to the queue", "grace period over"):
            handed_back.append(line)
    return in_hand, finished, handed_back


def test_the_autoscaler_runs_with_its_settings(host):
    assert_service_up(host, UNIT)
    unit = host.file(f"/etc/systemd/system/{UNIT}.service")
    assert unit.mode == 0o644
    assert "NoNewPrivileges=yes" in unit.content_string
    assert "ProtectSystem=strict" in unit.content_string
    config = host.file(CONFIG)
    assert (config.user, config.mode) == ("root", 0o644)
    # No secret of its own: it reads the service's Redis URL from the settings' file.
    assert "redis_url_file = /etc/morpheus/secrets/morpheus_redis_url" in config.content_string
    assert "password" not in config.content_string
    checked = host.run(f"/usr/local/sbin/{UNIT} --check-config {CONFIG}")
    assert checked.rc == 0, checked.stderr
    # Its figures reach the node exporter's folder, which the exporters' role made after
    # the agent first started: written within the last rounds, and its rounds succeed.
    figures = host.file(settings(host)["textfile"])
    assert figures.exists, "the autoscaler has written no figures (see its journal)"
    assert time.time() - figures.mtime.timestamp() < 30
    assert "morpheus_worker_autoscaler_up 1" in figures.content_string


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"worker_autoscale_min": 3, "worker_autoscale_max": 2},
            "the counts must nest, worker_containers (1) <= worker_autoscale_min (3) <= "
            "worker_autoscale_max (2) <= 32",
        ),
        (
            {"worker_autoscale_cooldown_seconds": -5},
            "worker_autoscale_cooldown_seconds must be 0 or more seconds, not -5",
        ),
        (
            {"worker_autoscale_max": "lots"},
            "argument 'worker_autoscale_max' is of type str and we were unable to convert to int",
        ),
    ],
)
def test_bad_autoscaling_input_stops_before_any_change(host, bad, message):
    before = host.file(CONFIG).content_string
    code, output = ansible_playbook(
        PROJECT / "playbooks" / "site.yml", bad, tags="worker", options=["--limit", "workers"]
    )
    assert code != 0, output[-3000:]
    assert message in output, output[-3000:]
    assert "changed=0" in output, output[-3000:]
    assert host.file(CONFIG).content_string == before


def test_a_backlog_scales_out_to_the_maximum_and_back_with_every_comic_done_once(host, submitter):
    limits = settings(host)
    low, high = int(limits["min_workers"]), int(limits["max_workers"])
    cooldown = float(limits["cooldown_seconds"])
    jobs_per_worker = int(limits["jobs_per_worker"])
    assert high > low, limits
    assert math.ceil(BACKLOG / jobs_per_worker) >= high, "the backlog must ask for the maximum"
    # Earlier checks may have left added workers: the host is at its minimum first.
    wait_for_count(host, low, cooldown + 60, present=True)
    started_at = time.time()

    started = time.monotonic()
    submitter.submit(BACKLOG, "Autoscale drill", NOVEL)
    out_after = wait_for_count(host, high, 60)
    scaled_out = time.monotonic() - started

    # The added workers are copies of the role's, hardening and release included.
    template = json.loads(host.check_output(f"docker inspect {TEMPLATE}"))[0]
    added = [name for name in workers(host) if name != TEMPLATE]
    assert len(added) == high - 1, added
    ports = set()
    for name in added:
        copy = json.loads(host.check_output(f"docker inspect {name}"))[0]
        assert copy["HostConfig"] == template["HostConfig"], name
        for key in ("Image", "Cmd", "Entrypoint", "User", "StopTimeout", "Healthcheck"):
            assert copy["Config"][key] == template["Config"][key], (name, key)
        labels = copy["Config"]["Labels"]
        assert labels["org.morpheus.autoscaled"] == "true"
        for label in ("org.morpheus.role", "org.morpheus.release", "org.morpheus.settings"):
            assert labels[label] == template["Config"]["Labels"][label], (name, label)
        env = dict(item.split("=", 1) for item in copy["Config"]["Env"])
        ports.add(env["MORPHEUS_WORKER_METRICS_PORT"])
        assert copy["HostConfig"]["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in copy["HostConfig"]["SecurityOpt"]
        assert copy["HostConfig"]["ReadonlyRootfs"] is True
    assert len(ports) == len(added), f"metrics ports shared: {ports}"
    log_files = follow_logs(host, added)

    # A trickle keeps jobs running when the cooldown ends: the scale-in drains workers
    # that may hold one.
    for _ in range(TRICKLE):
        submitter.submit(1, "Autoscale drill", NOVEL)
        time.sleep(2)
    back_after = wait_for_count(host, low, cooldown + 180, present=True)
    scaled_in = time.monotonic() - started

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        states = comic_states(submitter.ids)
        if all(status in ("completed", "failed", "cancelled") for status, _ in states.values()):
            break
        time.sleep(2)
    states = comic_states(submitter.ids)
    assert len(states) == BACKLOG + TRICKLE, states
    not_once = {c: s for c, s in states.items() if s != ("completed", 1)}
    assert not not_once, f"not completed at the first attempt: {not_once}"

    lines = journal_since(host, started_at - 1)
    assert any(line.startswith("scale out:") for line in lines), lines
    assert any(line.startswith("scale in:") for line in lines), lines
    drained = [line for line in lines if ": drained " in line]
    assert len(drained) >= high - low, lines
    # Docker's stop never had to kill one: each exited by itself once its jobs were done.
    assert all(line.rstrip().endswith("exit code 0; removed") for line in drained), drained
    assert not any("killed" in line or "SIGKILL" in line for line in lines), lines
    # Each added worker drained: the jobs it held when told to stop, it finished.
    held_jobs = 0
    for log_file in log_files:
        in_hand, finished, handed_back = drains_seen(host, log_file)
        assert not handed_back, f"{log_file}: {handed_back}"
        assert set(in_hand) <= set(finished), f"{log_file}: held {in_hand}, finished {finished}"
        held_jobs += len(in_hand)
    host.run("rm -f /root/autoscale-drill-*.log")
    say(
        f"autoscaling: {BACKLOG} comics queued, {low} -> {high} workers in {scaled_out:.0f} s "
        f"({out_after:.0f} s of waiting); back to {low} {scaled_in:.0f} s after the first "
        f"submission ({back_after:.0f} s after the trickle of {TRICKLE}), cooldown "
        f"{cooldown:g} s; {len(states)} comics completed at attempt 1; {held_jobs} jobs "
        f"in hand when a worker was told to drain, all finished there; "
        f"drains: {'; '.join(line.split(': ', 1)[1] for line in drained)}"
    )
