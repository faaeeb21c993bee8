"""morpheus_loadtest.generator and .image: the container's pure parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from morpheus_loadtest import generator, image
from morpheus_loadtest.bare import BareResult
from morpheus_loadtest.config import CapacityPlan, RunConfig
from morpheus_loadtest.errors import LoadTestError

LISTING = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
42: eth0@if43    inet 172.30.10.254/24 brd 172.30.10.255 scope global eth0\\       valid_lft forever
"""


def test_interface_of_finds_the_containers_own_address():
    assert generator.interface_of("172.30.10.254", LISTING) == "eth0"


def test_interface_of_refuses_an_address_it_does_not_hold():
    with pytest.raises(LoadTestError, match=r"no interface of the container holds 172\.30\.10\.9"):
        generator.interface_of("172.30.10.9", LISTING)


def config(**changes) -> RunConfig:
    values = {
        "run": "r",
        "users": 100,
        "spawn_rate": 10,
        "duration": 180,
        "addresses": ["172.30.10.254"],
        "prefix": 24,
        "names": {"storefront": "app.example"},
        "metrics_urls": [],
    }
    return RunConfig(**{**values, **changes})


def test_locust_runs_headless_with_the_reports():
    cmd = generator.locust_command(config())
    line = " ".join(cmd)
    assert "--headless" in cmd and "--csv-full-history" in cmd
    assert "--users 100 --spawn-rate 10 " in line + " "
    assert "--run-time 180s" in line
    assert "--html /results/locust.html" in line
    assert cmd[cmd.index("--locustfile") + 1].endswith("loadtest/locustfile.py")


def test_a_capacity_search_leaves_the_users_to_the_load_shape():
    cmd = generator.locust_command(config(capacity=CapacityPlan(counts=[10, 20])))
    assert "--users" not in cmd and "--spawn-rate" not in cmd


def test_the_image_takes_every_manylinux_wheel_debian_12_runs():
    tags = image.platforms("x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert tags[-3:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def test_the_image_definition_changes_with_what_it_is_made_of(tmp_path):
    loadtest = Path(__file__).resolve().parents[2] / "loadtest"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("locust==2.47.0\n")
    first = image.definition(loadtest, constraints, "sha256:base")
    assert first == image.definition(loadtest, constraints, "sha256:base")
    assert first != image.definition(loadtest, constraints, "sha256:newer-base")
    constraints.write_text("locust==2.48.0\n")
    assert first != image.definition(loadtest, constraints, "sha256:base")


def bare_result(answered: int, failed: int) -> BareResult:
    return BareResult("http://172.30.10.10:8100/health/live", 32, 20.0, answered, failed, 9.0, 20.0)


@pytest.mark.parametrize(
    ("serving", "measured", "said"),
    [
        (None, None, "none of http://172.30.10.10:8000/health/live, http://172.30.10.10:8100"),
        (
            "http://172.30.10.10:8100/health/live",
            bare_result(0, 12639),
            "answered none of 12639 requests",
        ),
    ],
)
def test_a_bare_measurement_that_got_no_answer_is_not_reported(
    monkeypatch, tmp_path, capsys, serving, measured, said
):
    """No bare.json, so no `0 req/s` beside the search's figures: the run says why."""
    monkeypatch.setattr(generator, "RESULTS", tmp_path)
    monkeypatch.setattr(generator.bare, "serving_url", lambda urls, source: serving)
    monkeypatch.setattr(generator.bare, "measure", lambda url, source: measured)
    urls = ["http://172.30.10.10:8000/metrics", "http://172.30.10.10:8100/metrics"]
    generator.measure_bare(config(metrics_urls=urls))
    assert not (tmp_path / "bare.json").exists()
    out = capsys.readouterr().out
    assert "the bare service was not measured: " in out and said in out, out


def test_a_bare_measurement_of_the_serving_slot_is_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(generator, "RESULTS", tmp_path)
    live = "http://172.30.10.10:8100/health/live"
    monkeypatch.setattr(generator.bare, "serving_url", lambda urls, source: live)
    monkeypatch.setattr(generator.bare, "measure", lambda url, source: bare_result(48000, 0))
    generator.measure_bare(config(metrics_urls=["http://172.30.10.10:8100/metrics"]))
    kept = json.loads((tmp_path / "bare.json").read_text())
    assert (kept["answered"], kept["per_second"]) == (48000, 2400)
