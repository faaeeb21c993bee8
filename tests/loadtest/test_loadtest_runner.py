"""morpheus_loadtest.runner and .cli: the run's plan, the network, the container, the CA."""

from __future__ import annotations

import json

import pytest
from morpheus_loadtest import cli, runner
from morpheus_loadtest.config import CA_FILE, CapacityPlan, RunConfig, Secrets
from morpheus_loadtest.errors import LoadTestError

NETWORK = json.dumps(
    [
        {
            "Name": "morpheus-local",
            "IPAM": {"Config": [{"Subnet": "172.30.10.0/24", "Gateway": "172.30.10.1"}]},
            "Containers": {
                "a": {"Name": "morpheus-local-edge", "IPv4Address": "172.30.10.11/24"},
                "b": {"Name": "morpheus-local-api-1", "IPv4Address": "172.30.10.12/24"},
            },
        }
    ]
)


def test_network_addresses(fake_docker):
    fake_docker({"network inspect morpheus-local": NETWORK})
    assert runner.network_addresses("morpheus-local") == (
        "172.30.10.0/24",
        ["172.30.10.1", "172.30.10.11", "172.30.10.12"],
    )


def test_a_missing_network_means_no_platform(fake_docker):
    fake_docker({"network inspect": (1, "", "Error: No such network: morpheus-local")})
    with pytest.raises(LoadTestError, match="no platform answers") as refused:
        runner.network_addresses("morpheus-local")
    assert "make up" in refused.value.hint


@pytest.mark.parametrize(
    ("listed", "given", "expected"),
    [
        ("multihost\nmultihost\n", None, "inventories/local-multihost"),
        ("single\n", None, "inventories/local"),
        ("", None, "inventories/local"),
        ("multihost\n", "inventories/staging", "inventories/staging"),
    ],
)
def test_choose_inventory_follows_the_running_layout(fake_docker, listed, given, expected):
    fake_docker({"ps": listed})
    assert runner.choose_inventory(given) == expected


def test_plan_of_a_run():
    options = runner.Options(users=100, duration=180)
    assert runner.plan(options, free=191) == (100, None, 180)
    with pytest.raises(LoadTestError, match="100 users need 100 client addresses") as refused:
        runner.plan(options, free=50)
    assert "run at most 50 users" in refused.value.hint


def test_plan_of_a_capacity_search_stops_at_the_free_addresses():
    options = runner.Options(capacity=True, spawn_rate=10, step_seconds=60)
    users, capacity, seconds = runner.plan(options, free=191)
    assert users == 191
    assert capacity == CapacityPlan(counts=[100, 150, 191], step_seconds=60)
    # Each step: its new users at 10 a second, 10 s to settle, 60 s measured (and a margin).
    assert seconds == pytest.approx((10 + 10 + 65) + (5 + 10 + 65) + (4.1 + 10 + 65) + 30)
    assert runner.plan(runner.Options(capacity=True, max_users=150), free=191)[0] == 150
    explicit = runner.Options(capacity=True, steps=[20, 40])
    assert runner.plan(explicit, free=191)[1].counts == [20, 40]


def config(**changes) -> RunConfig:
    values = {
        "run": "20261206T034904Z",
        "users": 2,
        "spawn_rate": 10,
        "duration": 60,
        "addresses": ["172.30.10.254", "172.30.10.253"],
        "prefix": 24,
        "names": {
            "storefront": "app.example",
            "dashboard": "dashboard.example",
            "api": "api.example",
        },
        "metrics_urls": ["http://172.30.10.12:8000/metrics"],
        "ca_file": CA_FILE,
    }
    return RunConfig(**{**values, **changes})


def test_container_args(tmp_path):
    args = runner.container_args(
        "morpheus-loadtest-x",
        "morpheus/loadtest:abc",
        "morpheus-local",
        config(),
        "172.30.10.11",
        tmp_path / "results",
        tmp_path / "secrets.json",
        tmp_path / "ca.pem",
    )
    line = " ".join(args)
    assert args[:2] == ["run", "--detach"] and args[-1] == "morpheus/loadtest:abc"
    assert "--network morpheus-local --ip 172.30.10.254 --cap-add NET_ADMIN" in line
    assert "--privileged" not in line and "--cap-add ALL" not in line
    for name in ("app.example", "dashboard.example", "api.example"):
        assert f"--add-host {name}:172.30.10.11" in line  # the edge's private address
    assert f"{tmp_path / 'secrets.json'}:/run/loadtest/secrets.json:ro" in line
    assert f"{tmp_path / 'ca.pem'}:{CA_FILE}:ro" in line
    assert "--label org.morpheus.loadtest=20261206T034904Z" in line
    assert "X-Forwarded-For" not in line


def test_trust_prefers_the_given_then_the_local_then_the_inventorys_ca(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "LOCAL_CA", tmp_path / "missing.pem")
    given = tmp_path / "given.pem"
    assert runner.trust(given, {}, tmp_path)[0] == given
    path, named = runner.trust(None, {"ca_pem": "-----BEGIN CERTIFICATE-----\n"}, tmp_path)
    assert path == tmp_path / "ca.pem" and "smoke_ca_bundle" in named
    assert path.read_text().startswith("-----BEGIN")
    assert runner.trust(None, {"ca_pem": ""}, tmp_path) == (None, "the system's trust store")
    local = tmp_path / "local.pem"
    local.write_text("pem")
    monkeypatch.setattr(runner, "LOCAL_CA", local)
    assert runner.trust(None, {"ca_pem": "other"}, tmp_path)[0] == local


def test_the_run_files_read_back():
    plan = CapacityPlan(counts=[10, 20], step_seconds=30)
    written = config(capacity=plan, think_seconds=(1.0, 3.0))
    assert RunConfig.from_json(written.as_json()) == written
    assert written.url("api") == "https://api.example"
    assert written.address(1) == "172.30.10.253"
    with pytest.raises(LoadTestError, match="user 2 has no client address"):
        written.address(2)
    secrets = Secrets.from_json(
        json.dumps(
            {"api_keys": ["mph_a", "mph_b"], "dashboard": {"username": "u", "password": "p"}}
        )
    )
    assert (secrets.api_key(1), secrets.username, secrets.password) == ("mph_b", "u", "p")
    with pytest.raises(LoadTestError, match="user 5 has no API key"):
        secrets.api_key(5)


def test_the_run_id_sorts_by_time():
    from datetime import UTC, datetime

    assert runner.run_id(datetime(2026, 12, 6, 3, 49, 4, tzinfo=UTC)) == "20261206T034904Z"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "0"], "0 is not 1 or more"),
        (["--spawn-rate", "-1"], "-1 is not above 0"),
        (["--steps", "100,x"], "is not a list of user counts"),
        (["--inventory", "inventories/local", "--layout", "single"], "not both"),
        (["--ca-file", "/nonexistent/ca.pem"], "is not a file"),
    ],
)
def test_the_command_line_refuses(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert message in capsys.readouterr().err


def test_the_command_line_says_what_to_do_next(monkeypatch, capsys):
    def refuse(options):
        raise LoadTestError("no platform answers: ...", "run `make up`.")

    seen = []
    monkeypatch.setattr(cli, "execute", lambda options: seen.append(options) or refuse(options))
    assert cli.main(["--layout", "multihost", "--users", "20", "--steps", "20,40"]) == 1
    err = capsys.readouterr().err
    assert "error: no platform answers" in err and "next: run `make up`." in err
    assert seen[0].inventory == "inventories/local-multihost"
    assert (seen[0].users, seen[0].steps) == (20, [20, 40])


def start_until_the_keys(monkeypatch, fake_docker, tmp_path, network, **options):
    """Run execute until it would make the keys; what it printed, and the calls to
    make and revoke keys."""
    fake_docker(
        {
            "info": "27.0.0",
            "ps": "",
            "network inspect": network,
            "container inspect": (1, "", "No such container"),
        }
    )
    calls = []

    def make_keys(inventory, run, count, secrets):
        calls.append(("make", count))
        raise LoadTestError("stopped here", "the test stops before the keys.")

    monkeypatch.setattr(runner, "make_keys", make_keys)
    monkeypatch.setattr(runner, "remove_keys", lambda *args: calls.append(("remove",)))
    with pytest.raises(LoadTestError, match="stopped here"):
        runner.execute(runner.Options(results_root=tmp_path, **options))
    return calls


def test_a_capacity_search_beyond_the_free_addresses_says_so_before_it_starts(
    monkeypatch, fake_docker, tmp_path, capsys
):
    calls = start_until_the_keys(monkeypatch, fake_docker, tmp_path, NETWORK, capacity=True)
    out = capsys.readouterr().out
    note = (
        "==> note: the capacity search was asked for up to 400 users, and morpheus-local "
        "(172.30.10.0/24) has 191 free client addresses (one per user): it will end at 191 "
        "users at most"
    )
    assert note in out
    # Before anything is made for the run: 191 keys, as many as there are addresses.
    assert calls == [("make", 191), ("remove",)]


def test_a_capacity_search_the_local_network_has_room_for_says_nothing_of_it(
    monkeypatch, fake_docker, tmp_path, capsys
):
    larger = NETWORK.replace("172.30.10.0/24", "172.30.10.0/23")
    calls = start_until_the_keys(monkeypatch, fake_docker, tmp_path, larger, capacity=True)
    assert "note:" not in capsys.readouterr().out
    assert calls == [("make", 400), ("remove",)]
