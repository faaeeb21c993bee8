"""Morpheus's load test: readers, API clients and operators (loadtest/README.md).

Run by the load generator's container (scripts/loadtest, `make loadtest`), which
writes the run's configuration and secrets before Locust starts. Each user takes the
next number: its client address and its API key are the run's entries of that number.
What each kind of user does is in morpheus_loadtest/journeys.py; the think time
between two steps is 1-3 s (longer only when a 429 asks for it).

With a capacity plan, the load shape at the end steps the user count up and stops
at the first step that does not hold (morpheus_loadtest/capacity.py).
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import sys
import time
from pathlib import Path

import gevent
from locust import HttpUser, LoadTestShape, events, task
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

sys.path.insert(0, str(Path(__file__).resolve().parent))

from morpheus_loadtest import journeys
from morpheus_loadtest.capacity import CapacitySearch, Thresholds, Totals
from morpheus_loadtest.client import LIMITED, Browser, bound_pool
from morpheus_loadtest.config import RESULTS, load
from morpheus_loadtest.histograms import merge
from morpheus_loadtest.report import API_SITES, site_of

CONFIG, SECRETS = load()
LEDGER = journeys.Ledger()
NUMBERS = itertools.count()
PROGRESS_SECONDS = 15
STARTED: dict[str, float] = {}


class Visitor(HttpUser):
    """A user with its own number, client address, cookies and API key."""

    abstract = True
    host = CONFIG.url("storefront")

    def __init__(self, environment) -> None:
        self.number = next(NUMBERS)
        # Before HttpUser makes the session: its connections leave from this address.
        self.pool_manager = bound_pool(CONFIG.address(self.number))
        super().__init__(environment)
        self.client.verify = CONFIG.ca_file or True
        self.client.headers["User-Agent"] = f"morpheus-loadtest/{CONFIG.run}"
        urls = {site: CONFIG.url(site) for site in CONFIG.names}
        self.browser = Browser(self.client, urls, SECRETS.api_key(self.number))
        self.rng = random.Random(self.number)  # noqa: S311 - choices of a simulated reader
        self.steps = self.journey()

    def journey(self) -> journeys.Steps:
        raise NotImplementedError

    def wait_time(self) -> float:
        return self.browser.pause() + self.rng.uniform(*CONFIG.think_seconds)

    @task
    def step(self) -> None:
        try:
            next(self.steps)
        except StopIteration:  # a step raised (Locust has recorded it): start over
            self.steps = self.journey()


class Reader(Visitor):
    weight = CONFIG.weights["reader"]

    def journey(self) -> journeys.Steps:
        return journeys.reader(self.browser, LEDGER, self.number, self.rng)


class ApiClient(Visitor):
    weight = CONFIG.weights["api_client"]

    def journey(self) -> journeys.Steps:
        return journeys.api_client(
            self.browser, LEDGER, self.number, self.rng, CONFIG.api_submissions
        )


class Operator(Visitor):
    weight = CONFIG.weights["operator"]

    def journey(self) -> journeys.Steps:
        self.state = journeys.OperatorState()
        return journeys.operator(
            self.browser, SECRETS.username, SECRETS.password, self.state, self.rng
        )

    def on_stop(self) -> None:
        journeys.log_out(self.browser, self.state)


def totals(environment) -> Totals:
    """The run's cumulative figures, for the capacity search."""
    stats = environment.stats
    limited = sum(LIMITED.values())
    api = merge(
        entry.response_times
        for (name, _method), entry in stats.entries.items()
        if site_of(name) in API_SITES
    )
    return Totals(
        requests=stats.total.num_requests,
        errors=stats.total.num_failures - limited,
        limited=limited,
        api=api,
    )


if CONFIG.capacity is not None:
    PLAN = CONFIG.capacity

    class CapacitySteps(LoadTestShape):
        """More users step by step until a step does not hold."""

        search: CapacitySearch | None = None

        def tick(self) -> tuple[int, float] | None:
            if self.search is None:
                self.search = CapacitySearch(
                    counts=PLAN.counts,
                    spawn_rate=CONFIG.spawn_rate,
                    measure_seconds=PLAN.step_seconds,
                    settle_seconds=PLAN.settle_seconds,
                    totals=lambda: totals(self.runner.environment),
                    thresholds=Thresholds(PLAN.api_p95_ms, PLAN.error_ratio),
                )
            return self.search.tick(self.get_run_time())


def write_json(name: str, data: object) -> None:
    (RESULTS / name).write_text(json.dumps(data, indent=2) + "\n")


def latest_queue() -> str:
    """The last queue sample the generator wrote (queue.csv), as progress shows it."""
    try:
        last = (RESULTS / "queue.csv").read_text().strip().splitlines()[-1]
        _at, waiting, active = last.split(",")
    except (OSError, IndexError, ValueError):
        return "queue n/a"
    return f"queue {waiting} waiting, {active} active" if waiting.isdigit() else "queue n/a"


def progress(environment) -> None:
    while True:
        gevent.sleep(PROGRESS_SECONDS)
        stats = environment.stats
        limited = sum(LIMITED.values())
        p95 = stats.total.get_current_response_time_percentile(0.95)
        done = sum(1 for c in LEDGER.comics.values() if c.finished_at is not None)
        print(
            f"loadtest: {time.time() - STARTED['at']:.0f} s, "
            f"{environment.runner.user_count} users, "
            f"{stats.total.num_requests} requests ({stats.total.current_rps:.1f}/s), "
            f"p95 of the last 10 s {p95 or 0:.0f} ms, "
            f"{stats.total.num_failures - limited} errors, {limited} 429s, "
            f"{len(LEDGER.comics)} comics submitted, {done} finished, {latest_queue()}",
            flush=True,
        )


@events.test_start.add_listener
def started(environment, **_kwargs) -> None:
    STARTED["at"] = time.time()
    gevent.spawn(progress, environment)


@events.quitting.add_listener
def quitting(environment, **_kwargs) -> None:
    """What the report reads, written once every user has stopped: Locust's statistics and
    failures as its CSV files have them (its own last periodic write may miss the final
    second), each endpoint's histogram, the comics, the run's start and end."""
    final = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with (RESULTS / "final_stats.csv").open("w", newline="") as out:
        final.requests_csv(csv.writer(out))
    with (RESULTS / "final_failures.csv").open("w", newline="") as out:
        final.failures_csv(csv.writer(out))
    histograms = {
        f"{method} {name}": {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "response_times": {str(ms): n for ms, n in entry.response_times.items()},
        }
        for (name, method), entry in environment.stats.entries.items()
    }
    write_json("histograms.json", histograms)
    shape = environment.shape_class
    if shape is not None and getattr(shape, "search", None) is not None:
        write_json("capacity.json", shape.search.as_dict())
    write_json("comics.json", LEDGER.as_list())
    write_json(
        "timeline.json",
        {"started": STARTED.get("at", time.time()), "stopped": time.time()},
    )
