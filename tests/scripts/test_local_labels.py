"""morpheus_local.labels: `down` removes what carries the label, and nothing else.

The selection runs against a fake Docker CLI, and against the real engine when one
answers (on throwaway objects with a label of their own, so a running local platform
is never touched).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import pytest
from morpheus_local import labels, process
from morpheus_local.errors import LocalError


def test_down_lists_by_label_and_removes_only_what_is_listed(fake_docker):
    calls = fake_docker(
        {
            "ps --all": "morpheus-local\n",
            "volume ls": "morpheus-local-docker\n",
            "network ls": "morpheus-local\n",
        }
    )
    removed = labels.remove_labelled(labels.SELECTOR)
    assert removed == [
        "container morpheus-local",
        "volume morpheus-local-docker",
        "network morpheus-local",
    ]
    listings = [c for c in calls if "--filter" in c]
    assert len(listings) == 3
    assert all("label=org.morpheus.local=1" in c for c in listings)
    removals = [c for c in calls if "--filter" not in c]
    assert [c[-1] for c in removals] == [
        "morpheus-local",
        "morpheus-local-docker",
        "morpheus-local",
    ]
    assert [c[0] for c in removals] == ["rm", "volume", "network"]


def test_down_with_nothing_there_removes_nothing(fake_docker):
    calls = fake_docker({})
    assert labels.remove_labelled(labels.SELECTOR) == []
    assert all("--filter" in c for c in calls)


def test_a_removal_that_fails_stops_and_names_the_object(fake_docker):
    fake_docker(
        {
            "network ls": "morpheus-local\n",
            "network rm": (1, "", "network morpheus-local has active endpoints"),
        }
    )
    failed = "`docker network rm morpheus-local` failed: network morpheus-local has active"
    with pytest.raises(LocalError, match=re.escape(failed)):
        labels.remove_labelled(labels.SELECTOR)


@pytest.fixture
def engine():
    if shutil.which("docker") is None or not process.docker_answers():
        print("no Docker engine answers: `make harness` starts one")
        pytest.skip("no Docker engine answers (`make harness` starts one)")


def test_down_removes_labelled_objects_and_leaves_the_rest(engine):
    token = uuid.uuid4().hex[:10]
    key = "org.morpheus.local.test"
    names = {kind: f"morpheus-test-{token}-{kind}" for kind in ("ours", "unlabelled", "other")}
    try:
        for kind, values in (("ours", [token]), ("unlabelled", []), ("other", ["other"])):
            flags = [f for value in values for f in ("--label", f"{key}={value}")]
            subprocess.run(["docker", "network", "create", *flags, names[kind]], check=True)
        subprocess.run(
            ["docker", "volume", "create", "--label", f"{key}={token}", names["ours"]],
            check=True,
            capture_output=True,
        )
        removed = labels.remove_labelled(f"{key}={token}")
        assert sorted(removed) == [f"network {names['ours']}", f"volume {names['ours']}"]
        networks = subprocess.run(
            ["docker", "network", "ls", "--format", "{{.Name}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert names["ours"] not in networks
        assert names["unlabelled"] in networks
        assert names["other"] in networks
        assert labels.remove_labelled(f"{key}={token}") == []
    finally:
        for name in names.values():
            subprocess.run(["docker", "network", "rm", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", names["ours"]], capture_output=True)
