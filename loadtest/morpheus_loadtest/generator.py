"""The load generator's container: the whole run, from the addresses to the report.

1. adds the users' client addresses to the interface that holds the container's own
   (it runs with NET_ADMIN for this; they go with the container);
2. samples the queue from the service's /metrics every few seconds (queue.csv);
3. runs Locust headless on loadtest/locustfile.py: its CSV files, its HTML report;
4. follows the comics still unfinished when the load stops, each from its owner's
   address (the storefront's status page, or the API with the owner's key), for at
   most the run's drain time;
5. writes the report (report.json, report.md, chart.png) and prints its summary line.

Its lines to follow start with "loadtest:"; scripts/loadtest shows them and keeps the
rest in generator.log.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from . import bare
from . import report as reporting
from .addresses import ip_batch
from .arp import announce
from .config import RESULTS, RunConfig, Secrets, load
from .errors import LoadTestError
from .pages import FINAL_STATUSES, read_page
from .queue import QueueSample, QueueSampler

LOCUSTFILE = Path(__file__).resolve().parents[1] / "locustfile.py"
PROGRESS_SECONDS = 15
DRAIN_POLL_SECONDS = 5


def say(message: str) -> None:
    print(f"loadtest: {message}", flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    # Fixed argument lists built here.
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kwargs)  # noqa: S603


def interface_of(address: str, listing: str) -> str:
    """The interface holding `address`, from `ip -o -4 address show`."""
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet" and fields[3].split("/")[0] == address:
            return fields[1].split("@")[0]
    raise LoadTestError(
        f"no interface of the container holds {address}",
        "start the container with --ip set to the run's first address (scripts/loadtest does).",
    )


def change_addresses(config: RunConfig, action: str) -> None:
    listing = run(["ip", "-o", "-4", "address", "show"])
    device = interface_of(config.addresses[0], listing.stdout)
    batch = ip_batch(config.addresses, config.prefix, device, action)
    if not batch:
        return
    done = run(["ip", "-batch", "-"], input=batch)
    if done.returncode != 0 and action == "add":
        raise LoadTestError(
            f"adding the client addresses to {device} failed: {done.stderr.strip()[:300]}",
            "the container needs NET_ADMIN (scripts/loadtest gives it); check that no other "
            "container holds these addresses (docker network inspect).",
        )
    if action == "add":
        try:
            announce(device, config.addresses)
        except OSError as error:  # the first requests may wait for stale neighbour entries
            say(f"could not announce the addresses on {device} ({error}); going on")
        say(
            f"{len(config.addresses)} client addresses on {device} "
            f"({config.addresses[-1]} to {config.addresses[0]})"
        )


class QueueFile:
    """queue.csv, a row per sample, written as they come (the progress lines read it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("at,waiting,active\n")

    def __call__(self, sample: QueueSample) -> None:
        with self.path.open("a") as out:
            out.write(f"{sample.at:.1f},{sample.waiting},{sample.active}\n")


def locust_command(config: RunConfig) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "--locustfile",
        str(LOCUSTFILE),
        "--headless",
        "--csv",
        str(RESULTS / "locust"),
        "--csv-full-history",
        "--html",
        str(RESULTS / "locust.html"),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "10",
        # Failures are the report's to judge: Locust's exit code says whether it ran.
        "--exit-code-on-error",
        "0",
        "--run-time",
        f"{round(config.duration)}s",
    ]
    if config.capacity is None:
        cmd += ["--users", str(config.users), "--spawn-rate", str(config.spawn_rate)]
    return cmd


class BoundAdapter(HTTPAdapter):
    """requests' adapter with its connections from one source address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, connections, maxsize, block=False, **kwargs) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(connections, maxsize, block, **kwargs)


def poll(session: requests.Session, config: RunConfig, secrets: Secrets, comic: dict) -> str | None:
    """A comic's status as its owner sees it (None: no answer this time)."""
    try:
        if comic["via"] == "api":
            answer = session.get(
                f"{config.url('api')}/v1/comics/{comic['id']}",
                headers={"Authorization": f"Bearer {secrets.api_key(comic['user'])}"},
                timeout=30,
            )
            return answer.json().get("status") if answer.status_code == 200 else None
        answer = session.get(f"{config.url('storefront')}/comics/{comic['id']}", timeout=30)
        return read_page(answer.text).status if answer.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def drain(config: RunConfig, secrets: Secrets, comics: list[dict], sampler: QueueSampler) -> None:
    """Follow the unfinished comics to their end, for at most the run's drain time."""
    pending = [c for c in comics if c.get("finished_at") is None]
    if not pending:
        return
    say(
        f"the load is over; following {len(pending)} unfinished comics "
        f"(at most {config.drain_seconds:.0f} s)"
    )
    sessions: dict[int, requests.Session] = {}
    deadline = time.time() + config.drain_seconds
    shown = time.time()
    while pending and time.time() < deadline:
        for comic in list(pending):
            session = sessions.get(comic["user"])
            if session is None:
                session = sessions[comic["user"]] = requests.Session()
                session.verify = config.ca_file or True
                session.mount("https://", BoundAdapter(config.address(comic["user"])))
            status = poll(session, config, secrets, comic)
            if status in FINAL_STATUSES:
                comic["status"], comic["finished_at"] = status, time.time()
                pending.remove(comic)
        if time.time() - shown >= PROGRESS_SECONDS:
            shown = time.time()
            latest = sampler.latest
            queue = f", {latest.waiting} waiting in the queue" if latest else ""
            say(f"{len(pending)} comics unfinished{queue}")
        if pending:
            time.sleep(DRAIN_POLL_SECONDS)
    if pending:
        say(f"{len(pending)} comics still unfinished after {config.drain_seconds:.0f} s")


def read_text(name: str) -> str:
    path = RESULTS / name
    return path.read_text() if path.exists() else ""


def make_report(config: RunConfig) -> dict:
    timeline = json.loads(read_text("timeline.json") or "{}")
    started = timeline.get("started") or time.time()
    stopped = timeline.get("stopped") or time.time()
    history = reporting.read_history(read_text("locust_stats_history.csv"))
    capacity_json, bare_json = read_text("capacity.json"), read_text("bare.json")
    capacity = json.loads(capacity_json) if capacity_json else None
    if capacity is not None and bare_json:
        capacity["bare"] = json.loads(bare_json)
    users = max((p.users for p in history), default=config.users)
    report = reporting.build_report(
        users=users,
        seconds=stopped - started,
        started=started,
        stats_text=read_text("final_stats.csv"),
        failures_text=read_text("final_failures.csv"),
        histograms=json.loads(read_text("histograms.json") or "{}"),
        comics=json.loads(read_text("comics.json") or "[]"),
        queue_text=read_text("queue.csv"),
        history=history,
        capacity=capacity,
    )
    reporting.write_report(RESULTS, report)
    try:
        from .chart import draw

        queue = reporting.read_queue(read_text("queue.csv"))
        draw(RESULTS / "chart.png", history, queue, started, f"Morpheus load test {config.run}")
    except ImportError as error:  # the image carries matplotlib; elsewhere no chart
        say(f"no chart ({error})")
    return report


def write_comics(comics: list[dict]) -> None:
    (RESULTS / "comics.json").write_text(json.dumps(comics, indent=2) + "\n")
    with (RESULTS / "comics.csv").open("w", newline="") as out:
        writer = csv.DictWriter(
            out,
            ["id", "via", "user", "status", "submitted_at", "finished_at"],
            extrasaction="ignore",
        )
        writer.writeheader()
        writer.writerows(comics)


def measure_bare(config: RunConfig) -> None:
    """After a capacity search and its drain, with the queue quiet: the bare service's
    ceiling on the same machine (bare.py), into bare.json for the report."""
    # The search's own figures stand without it, whatever goes wrong here.
    url = bare.serving_url(config.metrics_urls, source=config.addresses[0])
    if url is None:
        tried = ", ".join(dict.fromkeys(map(bare.live_url, config.metrics_urls)))
        say(f"the bare service was not measured: none of {tried} answered 200")
        return
    say(
        f"the bare service: {bare.DEFAULT_CONNECTIONS} keep-alive connections to {url} "
        f"for {bare.DEFAULT_SECONDS:.0f} s"
    )
    try:
        result = bare.measure(url, source=config.addresses[0])
    except (OSError, RuntimeError) as error:
        say(f"the bare service was not measured: {error}")
        return
    if not result.answered:
        say(f"the bare service was not measured: {url} answered none of {result.failed} requests")
        return
    (RESULTS / "bare.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")


STOPPING = threading.Event()


def stop(locust: subprocess.Popen) -> None:
    """`docker stop`: Locust ends as on its own (its files, the comics so far), no drain."""
    STOPPING.set()
    if locust.poll() is None:
        locust.send_signal(signal.SIGTERM)


def main() -> int:
    try:
        config, secrets = load()
        change_addresses(config, "add")
    except LoadTestError as error:
        print(f"error: {error}\nnext: {error.hint}", file=sys.stderr, flush=True)
        return 1
    sampler = QueueSampler(config.metrics_urls, on_sample=QueueFile(RESULTS / "queue.csv"))
    sampler.start()
    try:
        if config.capacity is None:
            say(
                f"{config.users} users for {config.duration:.0f} s "
                f"(started {config.spawn_rate:g} a second)"
            )
        else:
            steps = ", ".join(map(str, config.capacity.counts))
            say(
                f"capacity search: {steps} users, {config.capacity.step_seconds:.0f} s "
                "measured per step"
            )
        locust = subprocess.Popen(locust_command(config))  # noqa: S603
        signal.signal(signal.SIGTERM, lambda *_: stop(locust))
        locust.wait()
        if locust.returncode != 0 and not STOPPING.is_set():
            print(
                f"error: Locust exited with {locust.returncode} (its messages are above)\n"
                "next: fix what it names; the partial results stay in the results folder",
                file=sys.stderr,
                flush=True,
            )
        comics = json.loads(read_text("comics.json") or "[]")
        if not STOPPING.is_set():
            drain(config, secrets, comics, sampler)
        write_comics(comics)
        if config.capacity is not None and config.metrics_urls and not STOPPING.is_set():
            measure_bare(config)
    finally:
        sampler.stop()
        change_addresses(config, "del")
    if not read_text("final_stats.csv"):
        print("error: Locust wrote no statistics\nnext: read generator.log", file=sys.stderr)
        return 1
    report = make_report(config)
    print(report["summary"], flush=True)
    return 0 if locust.returncode == 0 and not STOPPING.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
