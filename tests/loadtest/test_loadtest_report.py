"""morpheus_loadtest.report: the run's figures from Locust's CSV files and the run's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from morpheus_loadtest.report import (
    RATE_LIMITED,
    HistoryPoint,
    build_report,
    comic_figures,
    drawing_figures,
    markdown,
    queue_figures,
    read_history,
    read_stats,
    write_report,
)

# As Locust 2.47 writes them (final_stats.csv and final_failures.csv are its _stats.csv and
# _failures.csv, written once more when the users have stopped).
DATA = Path(__file__).resolve().parent / "data"
STATS = (DATA / "final_stats.csv").read_text()
STATS_HEADER = STATS.splitlines()[0]
FAILURES = (DATA / "final_failures.csv").read_text()
HISTOGRAMS = {
    "POST api /v1/comics": {"response_times": {"74": 3, "110": 2, "130": 1}},
    "GET api /v1/comics/{comic_id}": {"response_times": {"19": 6, "22": 2, "47": 2}},
    "GET storefront /": {"response_times": {"9": 10, "85": 4}},
    "GET dashboard /sessions": {"response_times": {}},
}
HISTORY = (DATA / "locust_stats_history.csv").read_text()
QUEUE = "at,waiting,active\n1000.0,0,0\n1005.0,7,2\n1010.0,3,2\n1015.0,0,0\n"
COMICS = [
    {
        "id": "a",
        "via": "form",
        "user": 0,
        "submitted_at": 1001.0,
        "status": "completed",
        "finished_at": 1004.0,
    },
    {
        "id": "b",
        "via": "api",
        "user": 0,
        "submitted_at": 1002.0,
        "status": "completed",
        "finished_at": 1012.0,
    },
    {
        "id": "c",
        "via": "api",
        "user": 1,
        "submitted_at": 1003.0,
        "status": "completed",
        "finished_at": 1009.0,
    },
]


def test_read_stats_takes_429s_apart_from_errors():
    endpoints, total = read_stats(STATS, FAILURES)
    status = next(e for e in endpoints if e.name == "api /v1/comics/{comic_id}")
    assert (status.requests, status.failures, status.limited, status.errors) == (10, 3, 2, 1)
    assert (status.p50_ms, status.p95_ms, status.p99_ms) == (19, 47, 47)
    submit = next(e for e in endpoints if e.method == "POST")
    assert (submit.limited, submit.errors) == (1, 0)
    assert (total.requests, total.failures, total.limited, total.errors) == (30, 4, 3, 1)
    assert total.rps == pytest.approx(0.76)


def test_read_stats_reads_an_endpoint_with_no_requests():
    endpoints, _ = read_stats(STATS, "")
    sessions = next(e for e in endpoints if e.name == "dashboard /sessions")
    assert (sessions.requests, sessions.p95_ms, sessions.limited) == (0, None, 0)


def test_read_stats_refuses_a_file_without_the_aggregate():
    with pytest.raises(ValueError, match="no Aggregated row"):
        read_stats(STATS_HEADER + "\nGET,storefront /,1,0,9,9,9,9,9,1,0,9,9,9,9,9,9,9,9,9,9,9\n")


def test_read_history_keeps_the_aggregate_rows():
    points = read_history(HISTORY)
    assert [(p.at, p.users, p.p95_ms) for p in points] == [(1000, 0, None), (1001, 6, 150)]


def test_queue_figures():
    samples = [(1000.0, 0, 0), (1005.0, 7, 2), (1010.0, 3, 2), (1015.0, 0, 0)]
    figures = queue_figures(samples, started=1000.0)
    assert figures["max_waiting"] == 7
    assert figures["max_waiting_at_s"] == 5.0
    assert figures["last_waiting"] == 0
    assert figures["samples"][1] == [5.0, 7, 2]
    assert queue_figures([], 0)["max_waiting"] is None


def test_drawing_figures_split_the_p95_by_what_the_workers_did():
    """Each point takes the queue's latest sample at or before it: from 1005 to 1014 jobs
    were active, before and after none. Points with no users or no p95 are left out."""
    history = [
        HistoryPoint(at=1000.0, users=0, p95_ms=None, rps=0.0),
        HistoryPoint(at=1002.0, users=5, p95_ms=40, rps=3.0),
        HistoryPoint(at=1005.0, users=5, p95_ms=300, rps=3.0),
        HistoryPoint(at=1007.0, users=5, p95_ms=500, rps=3.0),
        HistoryPoint(at=1012.0, users=5, p95_ms=200, rps=3.0),
        HistoryPoint(at=1016.0, users=5, p95_ms=60, rps=3.0),
        HistoryPoint(at=1017.0, users=5, p95_ms=None, rps=3.0),
    ]
    samples = [(1015.0, 0, 0), (1000.0, 0, 0), (1005.0, 7, 2), (1010.0, 3, 2)]
    figures = drawing_figures(history, samples)
    assert figures["drawing"] == {"seconds": 3, "median_ms": 300, "max_ms": 500}
    assert figures["idle"] == {"seconds": 2, "median_ms": 40, "max_ms": 60}
    # A point before the first sample cannot be placed.
    assert drawing_figures(history[1:2], [(1003.0, 0, 1)])["drawing"]["seconds"] == 0
    assert drawing_figures([], []) == {
        "drawing": {"seconds": 0, "median_ms": None, "max_ms": None},
        "idle": {"seconds": 0, "median_ms": None, "max_ms": None},
    }


def test_the_report_says_the_p95_while_the_workers_drew():
    found = report(history=read_history(HISTORY))
    # The history's one point with users (1001, p95 150 ms) follows the idle sample at 1000.
    assert found["drawing"]["idle"] == {"seconds": 1, "median_ms": 150, "max_ms": 150}
    assert (
        "while the workers drew (0 s) median n/a ms, at most n/a ms; with no job drawing "
        "(1 s) median 150 ms, at most 150 ms" in markdown(found)
    )
    assert "while the workers drew" not in markdown(report())


def test_comic_figures_when_every_comic_finished():
    figures = comic_figures(COMICS, started=1000.0)
    assert figures["submitted"] == figures["completed"] == 3
    assert figures["done_in_s"] == 12.0  # the last one finished 12 s after the start
    assert figures["turnaround_p50_s"] == 6.0
    assert figures["turnaround_max_s"] == 10.0
    assert figures["by_way"] == {"form": 1, "api": 2}


def test_comic_figures_with_failed_and_unfinished_comics():
    comics = [
        *COMICS,
        {
            "id": "d",
            "via": "api",
            "user": 2,
            "submitted_at": 1003.0,
            "status": "failed",
            "finished_at": 1020.0,
        },
        {
            "id": "e",
            "via": "form",
            "user": 3,
            "submitted_at": 1004.0,
            "status": "queued",
            "finished_at": None,
        },
    ]
    figures = comic_figures(comics, started=1000.0)
    assert (figures["completed"], figures["failed"], figures["unfinished"]) == (3, 1, 1)
    assert figures["done_in_s"] is None
    assert figures["last_finished_s"] == 20.0


def report(**changes) -> dict:
    arguments = {
        "users": 100,
        "seconds": 180.4,
        "started": 1000.0,
        "stats_text": STATS,
        "failures_text": FAILURES,
        "histograms": HISTOGRAMS,
        "comics": COMICS,
        "queue_text": QUEUE,
    }
    return build_report(**{**arguments, **changes})


def test_build_report_groups_the_api_and_the_pages():
    found = report()
    api, pages = found["groups"]["api"], found["groups"]["pages"]
    # Every API request's histogram merged: 16 requests, p50 47 ms, p95 130 ms.
    assert (api["requests"], api["p50_ms"], api["p95_ms"], api["limited"], api["errors"]) == (
        16,
        47,
        130,
        3,
        1,
    )
    assert (pages["requests"], pages["p95_ms"], pages["errors"], pages["limited"]) == (14, 85, 0, 0)
    assert found["queue"]["max_waiting"] == 7
    assert found["errors"] == [
        {
            "method": "GET",
            "name": "api /v1/comics/{comic_id}",
            "error": "CatchResponseError('503 instead of 200')",
            "occurrences": 1,
        }
    ]


@pytest.mark.parametrize(
    ("changes", "summary"),
    [
        (
            {},
            "loadtest: 100 users, 180 s, API p95 130 ms, pages p95 85 ms, 1 errors, 3 429s, "
            "3 comics done in 12 s",
        ),
        (
            {
                "comics": [
                    *COMICS,
                    {
                        "id": "x",
                        "via": "api",
                        "user": 5,
                        "submitted_at": 1.0,
                        "status": "running",
                        "finished_at": None,
                    },
                ]
            },
            "loadtest: 100 users, 180 s, API p95 130 ms, pages p95 85 ms, 1 errors, 3 429s, "
            "3 of 4 comics done (1 unfinished)",
        ),
        (
            {"comics": [], "failures_text": "", "histograms": {}},
            "loadtest: 100 users, 180 s, API p95 n/a, pages p95 n/a, 4 errors, 0 429s, "
            "no comics submitted",
        ),
        (
            {"capacity": {"held": 150, "steps": [], "ended": "200 users did not hold"}},
            "loadtest: 100 users, 180 s, API p95 130 ms, pages p95 85 ms, 1 errors, 3 429s, "
            "3 comics done in 12 s; capacity: 150 users held",
        ),
        (
            {
                "capacity": {
                    "held": 100,
                    "steps": [
                        {"users": 100, "seconds": 60, "requests": 900, "held": True},
                        {"users": 150, "seconds": 60, "requests": 1200, "held": False},
                    ],
                    "ended": "150 users did not hold",
                    "bare": {"per_second": 3000},
                }
            },
            "loadtest: 100 users, 180 s, API p95 130 ms, pages p95 85 ms, 1 errors, 3 429s, "
            "3 comics done in 12 s; capacity: 100 users held; the bare service 3000 req/s at "
            "/health/live (the mix at 100 users: 15 req/s, 0.5% of it)",
        ),
        (
            {
                "capacity": {
                    "held": None,
                    "steps": [{"users": 100, "seconds": 60, "requests": 900, "held": False}],
                    "ended": "100 users did not hold",
                    "bare": {"per_second": 1500},
                }
            },
            "loadtest: 100 users, 180 s, API p95 130 ms, pages p95 85 ms, 1 errors, 3 429s, "
            "3 comics done in 12 s; capacity: none held; the bare service 1500 req/s at "
            "/health/live",
        ),
    ],
)
def test_summary_line(changes, summary):
    assert report(**changes)["summary"] == summary


def test_markdown_and_the_files(tmp_path):
    capacity = {
        "held": 100,
        "ended": "150 users did not hold: API p95 2300 ms > 2000 ms",
        "steps": [
            {
                "users": 100,
                "seconds": 60,
                "requests": 900,
                "api_p95_ms": 400,
                "errors": 0,
                "limited": 0,
                "held": True,
                "failure": None,
            },
            {
                "users": 150,
                "seconds": 60,
                "requests": 1200,
                "api_p95_ms": 2300,
                "errors": 0,
                "limited": 0,
                "held": False,
                "failure": "API p95 2300 ms > 2000 ms",
            },
        ],
    }
    capacity["bare"] = {
        "url": "http://172.30.10.11:8000/health/live",
        "connections": 32,
        "seconds": 20.0,
        "answered": 60000,
        "failed": 0,
        "per_second": 3000,
        "p50_ms": 9.5,
        "p95_ms": 21.0,
    }
    found = report(capacity=capacity)
    text = markdown(found)
    assert (
        "The bare service on the same machine, after the search: "
        "http://172.30.10.11:8000/health/live, 32 keep-alive connections for 20.0 s, "
        "3000 req/s answered, p50 9.5 ms, p95 21.0 ms, 0 failed" in text
    )
    assert text.startswith("# Load test report\n\nloadtest: 100 users, 180 s")
    assert "| GET | api /v1/comics/{comic_id} | 10 | 0.25 | 19 | 47 | 47 | 1 | 2 |" in text
    assert "| api | 16 | 47 | 130 | 130 | 1 | 3 |" in text
    assert "jobs waiting: at most 7 (5 s after the start)" in text
    assert "| 150 | 60 | 1200 | 2300 | 0 | 0 | no: API p95 2300 ms > 2000 ms |" in text
    assert RATE_LIMITED not in text  # 429s are a column, not an error row
    write_report(tmp_path, found)
    assert json.loads((tmp_path / "report.json").read_text())["summary"] == found["summary"]
    assert (tmp_path / "summary.txt").read_text() == found["summary"] + "\n"
    assert (tmp_path / "report.md").read_text() == text
