"""The worker role's autoscaler (roles/worker/files/morpheus-worker-autoscaler): its
decision, how it sorts a host's worker containers, the copy of the role's worker it
creates, its settings, its figures and its Redis wire format."""

import importlib.machinery
import importlib.util
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "roles" / "worker" / "files" / "morpheus-worker-autoscaler"


def load():
    loader = importlib.machinery.SourceFileLoader("morpheus_worker_autoscaler", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up while the class is made.
    sys.modules[loader.name] = module
    loader.exec_module(module)
    return module


scaler = load()
Q = scaler.QueueFigures
H = scaler.HostReport
Plan = scaler.Plan
POLICY = scaler.Policy(jobs_per_worker=4, max_wait_seconds=60, cooldown_seconds=300)
NOW = 10_000.0


def one_host(current=1, minimum=1, maximum=3, hold=False):
    return {"w1": H(current, minimum, maximum, hold)}


def targets(decision):
    return dict(decision.plan.targets)


# --- The decision: a success table (what the hosts should run) -------------------------------
CASES = [
    # (why, queue, hosts, last plan, policy, expected targets, direction recorded)
    ("an empty queue keeps the minimum", Q(0, 0, 0), one_host(), Plan(), POLICY, {"w1": 1}, ""),
    ("a few jobs fit the workers there are", Q(3, 1, 5), one_host(), Plan(), POLICY, {"w1": 1}, ""),
    (
        "a backlog scales out to the jobs' need",
        Q(7, 2, 5),
        one_host(),
        Plan(),
        POLICY,
        {"w1": 3},
        "out",
    ),
    ("never above the host's maximum", Q(100, 2, 5), one_host(), Plan(), POLICY, {"w1": 3}, "out"),
    (
        "a minimum above the need holds",
        Q(0, 0, 0),
        one_host(2, 2, 4),
        Plan(),
        POLICY,
        {"w1": 2},
        "",
    ),
    (
        "a job waiting too long asks for one more worker",
        Q(1, 2, 90),
        one_host(),
        Plan({"w1": 1}, NOW - 400, "out"),
        POLICY,
        {"w1": 2},
        "out",
    ),
    (
        "the age signal steps once per cooldown",
        Q(1, 2, 90),
        one_host(2),
        Plan({"w1": 2}, NOW - 10, "out"),
        POLICY,
        {"w1": 2},
        "out",
    ),
    (
        "the age signal off (max_wait 0) adds nothing",
        Q(1, 2, 9_999),
        one_host(),
        Plan(),
        scaler.Policy(4, 0, 300),
        {"w1": 1},
        "",
    ),
    (
        "scale-out right after a scale-out",
        Q(11, 0, 1),
        one_host(2),
        Plan({"w1": 2}, NOW - 5, "out"),
        POLICY,
        {"w1": 3},
        "out",
    ),
    (
        "no scale-out within the cooldown after a scale-in",
        Q(11, 0, 1),
        one_host(1),
        Plan({"w1": 1}, NOW - 5, "in"),
        POLICY,
        {"w1": 1},
        "in",
    ),
    (
        "scale-out once the cooldown after a scale-in is over",
        Q(11, 0, 1),
        one_host(1),
        Plan({"w1": 1}, NOW - 300, "in"),
        POLICY,
        {"w1": 3},
        "out",
    ),
    (
        "no scale-in within the cooldown",
        Q(0, 0, 0),
        one_host(3),
        Plan({"w1": 3}, NOW - 299, "out"),
        POLICY,
        {"w1": 3},
        "out",
    ),
    (
        "scale-in to the minimum once the cooldown is over",
        Q(0, 0, 0),
        one_host(3),
        Plan({"w1": 3}, NOW - 300, "out"),
        POLICY,
        {"w1": 1},
        "in",
    ),
    (
        "scale-in keeps the workers running jobs need",
        Q(0, 5, 0),
        one_host(3),
        Plan({"w1": 3}, NOW - 301, "out"),
        POLICY,
        {"w1": 2},
        "in",
    ),
    (
        "no scale-in while the next job waits too long",
        Q(1, 0, 61),
        one_host(3),
        Plan({"w1": 3}, NOW - 900, "out"),
        POLICY,
        {"w1": 3},
        "out",
    ),
    (
        "the plan, not the count, is where a pending scale-out starts from",
        Q(9, 0, 1),
        one_host(1),
        Plan({"w1": 3}, NOW - 2, "out"),
        POLICY,
        {"w1": 3},
        "out",
    ),
    (
        "a zero cooldown scales in at once",
        Q(0, 0, 0),
        one_host(3),
        Plan({"w1": 3}, NOW, "out"),
        scaler.Policy(4, 60, 0),
        {"w1": 1},
        "in",
    ),
    (
        "scale-out fills the host with the most room first",
        Q(20, 0, 1),
        {"w1": H(1, 1, 2), "w2": H(1, 1, 4)},
        Plan(),
        POLICY,
        {"w1": 2, "w2": 3},
        "out",
    ),
    (
        "ties in room go to the host running fewer, then by name",
        Q(12, 0, 1),
        {"w1": H(1, 1, 3), "w2": H(1, 1, 3)},
        Plan(),
        POLICY,
        {"w1": 2, "w2": 1},
        "out",
    ),
    (
        "every host at its maximum",
        Q(400, 0, 1),
        {"w1": H(2, 1, 2), "w2": H(4, 1, 4)},
        Plan(),
        POLICY,
        {"w1": 2, "w2": 4},
        "",
    ),
    (
        "scale-in takes from the host furthest above its minimum",
        Q(0, 4, 0),
        {"w1": H(3, 1, 3), "w2": H(2, 1, 3)},
        Plan({"w1": 3, "w2": 2}, NOW - 600, "out"),
        POLICY,
        {"w1": 1, "w2": 1},
        "in",
    ),
    (
        "a host in a rollout keeps its count; the others take the need",
        Q(20, 0, 1),
        {"w1": H(2, 1, 3, hold=True), "w2": H(1, 1, 3)},
        Plan({"w1": 1, "w2": 1}),
        POLICY,
        {"w1": 2, "w2": 3},
        "out",
    ),
    (
        "a host that no longer reports leaves the plan",
        Q(0, 0, 0),
        {"w2": H(1, 1, 3)},
        Plan({"w1": 3, "w2": 1}, NOW - 10, "out"),
        POLICY,
        {"w2": 1},
        "out",
    ),
    (
        "a new host starts from what it runs",
        Q(0, 0, 0),
        {"w1": H(1, 1, 3), "w2": H(2, 1, 3)},
        Plan({"w1": 1}, NOW - 10, "in"),
        POLICY,
        {"w1": 1, "w2": 2},
        "in",
    ),
    (
        "a host below its minimum is raised at once, cooldown or not",
        Q(0, 0, 0),
        one_host(1, 2, 3),
        Plan({"w1": 1}, NOW - 1, "in"),
        POLICY,
        {"w1": 2},
        "in",
    ),
    (
        "a plan above a lowered maximum comes down at once",
        Q(0, 0, 0),
        one_host(3, 1, 2),
        Plan({"w1": 3}, NOW - 1, "out"),
        POLICY,
        {"w1": 2},
        "out",
    ),
]


@pytest.mark.parametrize(
    ("queue", "hosts", "last", "policy", "expected", "direction"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(queue, hosts, last, policy, expected, direction):
    decision = scaler.decide(queue, hosts, policy, last, NOW)
    assert targets(decision) == expected, decision.summary
    assert decision.plan.direction == direction, decision.summary
    for name, target in expected.items():
        report = hosts[name]
        if not report.hold:
            assert report.minimum <= target <= report.maximum


def test_a_scale_event_starts_the_cooldown_and_says_why_from_what_to_what():
    decision = scaler.decide(Q(9, 1, 12), one_host(), POLICY, Plan({"w1": 1}), NOW)
    assert decision.changed
    assert decision.plan == Plan({"w1": 3}, NOW, "out")
    assert decision.summary == (
        "scale out: 9 waiting, 1 running, next job waited 12 s; wanted 3 "
        "(3 for 10 jobs at 4 a worker); 1 -> 3: w1 1 -> 3"
    )
    assert "\n" not in decision.summary


def test_scale_in_says_so_in_one_line():
    decision = scaler.decide(Q(0, 0, 0), one_host(3), POLICY, Plan({"w1": 3}, 0.0, "out"), NOW)
    assert decision.summary.startswith("scale in: 0 waiting, 0 running")
    assert decision.summary.endswith("3 -> 1: w1 3 -> 1")


def test_a_steady_queue_changes_nothing_and_keeps_the_cooldown():
    last = Plan({"w1": 2}, NOW - 50, "out")
    decision = scaler.decide(Q(5, 2, 3), one_host(2), POLICY, last, NOW)
    assert not decision.changed
    assert decision.plan == last
    assert decision.summary.startswith("steady:")


def test_a_held_scale_in_says_why():
    last = Plan({"w1": 3}, NOW - 20, "out")
    decision = scaler.decide(Q(0, 0, 0), one_host(3), POLICY, last, NOW)
    assert not decision.changed
    assert decision.summary.startswith("hold:")
    assert "scale-in held: 20 s after the last change, cooldown 300 s" in decision.summary


def test_a_held_change_says_what_it_held_back():
    last = Plan({"w1": 1}, NOW - 5, "in")
    assert scaler.decide(Q(20, 0, 1), one_host(1), POLICY, last, NOW).held == "scale-out"
    last = Plan({"w1": 3}, NOW - 5, "out")
    assert scaler.decide(Q(0, 0, 0), one_host(3), POLICY, last, NOW).held == "scale-in"
    assert scaler.decide(Q(9, 0, 1), one_host(3), POLICY, last, NOW).held == ""


def test_a_host_joining_the_plan_says_so():
    decision = scaler.decide(Q(0, 0, 0), one_host(1), POLICY, Plan(), NOW)
    assert decision.changed
    assert decision.summary.endswith("adjusted: w1 joins with 1")


def test_bringing_a_host_within_its_limits_leaves_the_cooldown_alone():
    last = Plan({"w1": 3, "gone": 2}, NOW - 20, "out")
    decision = scaler.decide(Q(9, 0, 1), {"w1": H(3, 1, 3)}, POLICY, last, NOW)
    assert decision.changed
    assert decision.plan == Plan({"w1": 3}, NOW - 20, "out")
    assert "gone gone" in decision.summary


def test_no_host_reports():
    decision = scaler.decide(Q(9, 0, 1), {}, POLICY, Plan({"w1": 2}), NOW)
    assert decision.plan.targets == {}
    assert decision.changed
    assert decision.summary == "no worker host reports"


def test_a_sequence_backs_up_then_drains_without_flapping():
    """A backlog arrives, the workers scale out at once; the queue drains; they stay
    until the cooldown ends, then scale in to the minimum; a burst right after a scale-in
    waits for the cooldown."""
    policy = scaler.Policy(jobs_per_worker=4, max_wait_seconds=60, cooldown_seconds=30)
    plan, current, seen = Plan(), 1, []
    timeline = [(0, Q(12, 0, 1)), (5, Q(6, 6, 3)), (20, Q(0, 2, 0)), (34, Q(0, 0, 0))]
    timeline += [(40, Q(9, 0, 1)), (70, Q(9, 0, 31))]
    for t, queue in timeline:
        decision = scaler.decide(queue, one_host(current), policy, plan, NOW + t)
        plan = decision.plan
        current = plan.targets["w1"]  # the host reaches its target before the next round
        seen.append((t, current, plan.direction))
    assert seen == [
        (0, 3, "out"),
        (5, 3, "out"),
        (20, 3, "out"),  # within the cooldown: no scale-in
        (34, 1, "in"),
        (40, 1, "in"),  # a burst 6 s after a scale-in waits
        (70, 3, "out"),
    ]


@pytest.mark.parametrize(
    ("policy", "message"),
    [(scaler.Policy(0, 60, 30), "jobs_per_worker must be 1 or more, not 0")],
)
def test_decide_refuses_a_policy_it_cannot_use(policy, message):
    with pytest.raises(ValueError, match=message):
        scaler.decide(Q(1, 0, 0), one_host(), policy, Plan(), NOW)


# --- The stored plan ---------------------------------------------------------------------------
def test_the_plan_round_trips_through_json():
    plan = Plan({"w1": 3, "w2": 1}, 12.5, "out")
    assert Plan.from_json(plan.to_json()) == plan
    assert Plan.from_json(plan.to_json().encode()) == plan


@pytest.mark.parametrize("stored", [None, b"", b"{", b"[]", b'{"targets": {"w1": "x"}}'])
def test_a_missing_or_broken_plan_is_an_empty_one(stored):
    assert Plan.from_json(stored) == Plan()


# --- A host's worker containers ----------------------------------------------------------------
def container(name, state="running", release="r2", settings="s1", autoscaled=False, index=None):
    labels = {
        "org.morpheus.role": "worker",
        "org.morpheus.release": release,
        "org.morpheus.settings": settings,
        "org.morpheus.slot": "blue",
    }
    if autoscaled:
        labels["org.morpheus.autoscaled"] = "true"
        labels["org.morpheus.autoscale.index"] = str(index)
    return scaler.Container(id=f"id-{name}", name=name, state=state, labels=labels)


def test_survey_counts_the_roles_workers_and_the_added_ones():
    found = scaler.survey(
        [
            container("morpheus-worker-0"),
            container("morpheus-worker-auto-blue-2", autoscaled=True, index=2),
            container("morpheus-worker-auto-blue-1", autoscaled=True, index=1),
            container("morpheus-worker-auto-blue-3", autoscaled=True, index=3),
            container("morpheus-worker-auto-green-1", autoscaled=True, index=1, release="r1"),
            container("morpheus-worker-auto-blue-4", "exited", autoscaled=True, index=4),
        ],
        "morpheus-worker",
        1,
        draining=["morpheus-worker-auto-blue-3"],
    )
    assert found.hold == ""
    assert found.template.name == "morpheus-worker-0"
    assert [c.name for c in found.added] == [
        "morpheus-worker-auto-blue-1",
        "morpheus-worker-auto-blue-2",
    ]
    assert [c.name for c in found.draining] == ["morpheus-worker-auto-blue-3"]
    assert [c.name for c in found.stale] == ["morpheus-worker-auto-green-1"]
    assert [c.name for c in found.gone] == ["morpheus-worker-auto-blue-4"]
    assert (found.current, found.present) == (3, 5)


@pytest.mark.parametrize(
    ("names", "hold"),
    [
        (
            [("morpheus-worker-0", "running"), ("morpheus-worker-0-next", "running")],
            "a release is rolling out (morpheus-worker-0-next)",
        ),
        (
            [("morpheus-worker-0", "exited")],
            "the role's workers do not all run (morpheus-worker-0, morpheus-worker-1)",
        ),
        (
            [("morpheus-worker-0", "running")],
            "the role's workers do not all run (morpheus-worker-1)",
        ),
    ],
)
def test_survey_holds_during_a_rollout_or_while_the_roles_workers_are_down(names, hold):
    found = scaler.survey(
        [container(name, state) for name, state in names], "morpheus-worker", 2, draining=[]
    )
    assert found.hold == hold


def test_survey_of_another_service_with_the_same_prefix_sees_no_rollout():
    found = scaler.survey(
        [container("morpheus-worker-0"), container("other-0-next")], "morpheus-worker", 1, []
    )
    assert found.hold == ""


def test_free_indexes_follow_the_slot_and_skip_names_taken():
    taken = ["morpheus-worker-0", "morpheus-worker-auto-blue-1", "morpheus-worker-auto-green-2"]
    assert scaler.free_indexes(taken, "morpheus-worker", "blue", 1, 4) == [2, 3]
    assert scaler.free_indexes(taken, "morpheus-worker", "green", 1, 4) == [1, 3]
    assert scaler.free_indexes(taken, "morpheus-worker", "blue", 1, 1) == []


# --- The copy of the role's worker ---------------------------------------------------------------
TEMPLATE = {
    "Name": "/morpheus-worker-0",
    "Config": {
        "Hostname": "worker-host-1",
        "Domainname": "",
        "User": "morpheus:morpheus",
        "Env": [
            "MORPHEUS_WORKER_CONCURRENCY=2",
            "MORPHEUS_WORKER_METRICS_HOST=10.0.0.3",
            "MORPHEUS_WORKER_METRICS_PORT=9201",
            "PATH=/opt/morpheus/bin:/usr/bin",
        ],
        "Cmd": ["worker"],
        "Entrypoint": ["morpheus"],
        "Image": "morpheus/app:r2",
        "Labels": {
            "org.morpheus.role": "worker",
            "org.morpheus.release": "r2",
            "org.morpheus.settings": "s1",
            "org.morpheus.slot": "green",
        },
        "Healthcheck": {"Test": ["NONE"]},
        "StopTimeout": 660,
    },
    "HostConfig": {
        "NetworkMode": "host",
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true"],
        "PidsLimit": 512,
        "Memory": 2147483648,
        "NanoCpus": 1500000000,
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=512m"},
        "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
        "Mounts": [
            {
                "Type": "bind",
                "Source": "/etc/morpheus/secrets",
                "Target": "/run/secrets",
                "ReadOnly": True,
            },
            {
                "Type": "bind",
                "Source": "/var/lib/morpheus/storage",
                "Target": "/var/lib/morpheus/storage",
            },
        ],
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
    },
    "NetworkSettings": {
        "Networks": {
            "host": {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "n1"}
        }
    },
}


def test_the_copy_keeps_the_hardening_and_settings_of_the_roles_worker():
    body = scaler.worker_copy(TEMPLATE, 2)
    assert body["HostConfig"] == TEMPLATE["HostConfig"]
    for key in ("User", "Cmd", "Entrypoint", "Image", "Healthcheck", "StopTimeout"):
        assert body[key] == TEMPLATE["Config"][key], key
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"host": {}}}


def test_the_copy_gets_its_own_metrics_port_and_is_labelled_added():
    body = scaler.worker_copy(TEMPLATE, 2)
    assert "MORPHEUS_WORKER_METRICS_PORT=9203" in body["Env"]
    assert "MORPHEUS_WORKER_METRICS_PORT=9201" not in body["Env"]
    assert "MORPHEUS_WORKER_CONCURRENCY=2" in body["Env"]
    assert body["Labels"] == {
        **TEMPLATE["Config"]["Labels"],
        "org.morpheus.autoscaled": "true",
        "org.morpheus.autoscale.index": "2",
    }
    # Docker fills the host name in from the host (host networking).
    assert "Hostname" not in body and "Domainname" not in body
    # The template is left as it was.
    assert "MORPHEUS_WORKER_METRICS_PORT=9201" in TEMPLATE["Config"]["Env"]
    assert "org.morpheus.autoscaled" not in TEMPLATE["Config"]["Labels"]


def test_the_copy_of_a_worker_without_metrics_has_none():
    template = json.loads(json.dumps(TEMPLATE))
    template["Config"]["Env"][2] = "MORPHEUS_WORKER_METRICS_PORT=0"
    assert "MORPHEUS_WORKER_METRICS_PORT=0" in scaler.worker_copy(template, 3)["Env"]


def test_the_copy_keeps_a_bridge_networks_addressing():
    template = json.loads(json.dumps(TEMPLATE))
    template["HostConfig"]["NetworkMode"] = "backend"
    template["NetworkSettings"]["Networks"] = {
        "backend": {"IPAMConfig": None, "Aliases": ["worker"], "NetworkID": "n2", "IPAddress": "x"}
    }
    endpoints = scaler.worker_copy(template, 1)["NetworkingConfig"]["EndpointsConfig"]
    assert endpoints == {"backend": {"Aliases": ["worker"]}}


def test_the_roles_hardened_worker_may_be_copied():
    assert scaler.template_problems(TEMPLATE) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"HostConfig": {"Privileged": True}}, "it is privileged"),
        ({"HostConfig": {"CapDrop": []}}, "it does not drop every capability"),
        ({"HostConfig": {"CapAdd": ["NET_ADMIN"]}}, "it does not drop every capability"),
        ({"HostConfig": {"SecurityOpt": []}}, "it may gain privileges (no no-new-privileges)"),
        ({"HostConfig": {"ReadonlyRootfs": False}}, "its root file system is writable"),
        ({"HostConfig": {"PidsLimit": 0}}, "its processes are not limited"),
        (
            {"Config": {"Labels": {"org.morpheus.role": "backend"}}},
            "it is not one of the role's workers",
        ),
        (
            {
                "Config": {
                    "Labels": {"org.morpheus.role": "worker", "org.morpheus.autoscaled": "true"}
                }
            },
            "it is not one of the role's workers",
        ),
    ],
)
def test_a_worker_changed_by_hand_is_not_copied(change, problem):
    template = json.loads(json.dumps(TEMPLATE))
    for part, values in change.items():
        template[part].update(values)
    assert problem in scaler.template_problems(template)


def test_the_copy_keeps_the_order_of_the_environment():
    env = scaler.worker_copy(TEMPLATE, 1)["Env"]
    assert env[2] == "MORPHEUS_WORKER_METRICS_PORT=9202"
    assert len(env) == len(TEMPLATE["Config"]["Env"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T03:45:31.123456789Z", 1796528731.123456),
        ("2026-12-06T03:45:31Z", 1796528731.0),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_docker_times(text, expected):
    assert scaler.docker_time(text) == (pytest.approx(expected) if expected else None)


def test_a_docker_list_entry_becomes_a_container():
    entry = {"Id": "abc", "Names": ["/morpheus-worker-0"], "State": "running", "Labels": None}
    assert scaler.container_from_api(entry) == scaler.Container(
        "abc", "morpheus-worker-0", "running", {}
    )


# --- Settings: a success table and a failure table ---------------------------------------------
GOOD = {
    "host": "worker-1",
    "name_prefix": "morpheus-worker",
    "base_workers": "1",
    "min_workers": "1",
    "max_workers": "3",
    "cooldown_seconds": "30",
    "jobs_per_worker": "4",
    "max_wait_seconds": "60",
    "interval_seconds": "5",
    "redis_url_file": "/etc/morpheus/secrets/morpheus_redis_url",
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {},
            {
                "max_workers": 3,
                "cooldown_seconds": 30.0,
                "textfile": "",
                "state_dir": "/run/morpheus-worker-autoscaler",
            },
        ),
        ({"cooldown_seconds": "0", "max_wait_seconds": "0"}, {"cooldown_seconds": 0.0}),
        ({"min_workers": "2", "max_workers": "2"}, {"min_workers": 2}),
        (
            {"textfile": "/var/lib/prometheus/node-exporter/x.prom"},
            {"textfile": "/var/lib/prometheus/node-exporter/x.prom"},
        ),
        ({"interval_seconds": " 0.5 "}, {"interval_seconds": 0.5}),
    ],
)
def test_good_settings(change, expected):
    config = scaler.parse_config({**GOOD, **change})
    for key, value in expected.items():
        assert getattr(config, key) == value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_workers": "4"}, "base_workers (1) <= min_workers (4) <= max_workers (3)"),
        ({"base_workers": "2"}, "base_workers (2) <= min_workers (1)"),
        ({"base_workers": "0", "min_workers": "0"}, "base_workers must be 1 or more, not 0"),
        ({"cooldown_seconds": "-1"}, "cooldown_seconds and max_wait_seconds must not be negative"),
        ({"cooldown_seconds": "soon"}, "cooldown_seconds: must be a number, not 'soon'"),
        ({"cooldown_seconds": "nan"}, "cooldown_seconds: must be a finite number"),
        ({"max_workers": "3.5"}, "max_workers: must be a whole number, not '3.5'"),
        ({"jobs_per_worker": "0"}, "jobs_per_worker must be 1 or more, not 0"),
        ({"interval_seconds": "0"}, "interval_seconds must be between 0.5 and 3600, not 0"),
        ({"redis_url_file": "secrets/url"}, "redis_url_file must be an absolute path"),
        ({"textfile": "x.prom"}, "textfile must be an absolute path, or empty for none"),
        ({"host": ""}, "host and name_prefix must not be empty"),
        ({"surprise": "1"}, "surprise: unknown setting"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(change, message):
    with pytest.raises(scaler.ConfigError) as refused:
        scaler.parse_config({**GOOD, **change})
    assert message in str(refused.value)


def test_missing_settings_are_named():
    values = dict(GOOD)
    del values["max_workers"], values["host"]
    with pytest.raises(scaler.ConfigError, match="host: missing; max_workers: missing"):
        scaler.parse_config(values)


def test_the_settings_file(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("# managed\n[autoscaler]\n" + "".join(f"{k} = {v}\n" for k, v in GOOD.items()))
    assert scaler.load_config(good).max_workers == 3
    assert scaler.main(["--check-config", str(good)]) == 0
    bad = tmp_path / "bad.conf"
    bad.write_text("[other]\nhost = x\n")
    with pytest.raises(scaler.ConfigError, match=r"has no \[autoscaler\] section"):
        scaler.load_config(bad)
    assert scaler.main(["--check-config", str(bad)]) == 2
    with pytest.raises(scaler.ConfigError, match="cannot read it"):
        scaler.load_config(tmp_path / "missing.conf")


# --- Redis: the URL and the wire format ----------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://morpheus:a%2Fb%40c@10.0.0.7:6379/0\n",
            {
                "host": "10.0.0.7",
                "port": 6379,
                "user": "morpheus",
                "password": "a/b@c",
                "db": 0,
                "tls": False,
            },
        ),
        (
            "rediss://:secret@redis.internal/2",
            {
                "host": "redis.internal",
                "port": 6379,
                "user": None,
                "password": "secret",
                "db": 2,
                "tls": True,
            },
        ),
        (
            "redis://10.0.0.7:6380",
            {
                "host": "10.0.0.7",
                "port": 6380,
                "user": None,
                "password": None,
                "db": 0,
                "tls": False,
            },
        ),
    ],
)
def test_redis_urls(url, expected):
    assert scaler.redis_address(url) == expected


@pytest.mark.parametrize("url", ["http://10.0.0.7:6379", "redis://", "10.0.0.7:6379"])
def test_a_url_that_is_not_redis_is_refused(url):
    with pytest.raises(scaler.RedisError, match="must be redis://"):
        scaler.redis_address(url)


def test_commands_are_encoded_as_resp_arrays():
    assert scaler.encode_command(["SET", "k", 1, b"\x00"]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$1\r\n\x00\r\n"
    )


def test_the_agent_talks_to_a_real_redis(tmp_path):
    """Against the machine's Redis (database 15): the queue's figures with BullMQ's keys,
    the hosts' reports, the plan and the lease."""
    url_file = tmp_path / "url"
    url_file.write_text("redis://127.0.0.1:6379/15")
    redis = scaler.Redis(str(url_file), timeout=2)
    try:
        redis.call("PING")
    except scaler.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    queue = f"autoscale-test-{tmp_path.name[-8:]}"
    store = scaler.QueueStore(redis, queue)
    bull = f"bull:{queue}"
    try:
        now_ms = 1_000_000_000_000
        # BullMQ adds at the left and workers take from the right: job-1 is next in line.
        redis.call("LPUSH", f"{bull}:wait", "job-1", "job-2", "job-3")
        redis.call("HSET", f"{bull}:job-1", "timestamp", now_ms - 30_000)
        # Back for another attempt: it waits since that attempt began.
        redis.call("HSET", f"{bull}:job-1", "processedOn", now_ms - 12_000)
        redis.call("HSET", f"{bull}:job-3", "timestamp", now_ms - 1_000)
        redis.call("ZADD", f"{bull}:prioritized", 1, "job-4")
        redis.call("LPUSH", f"{bull}:active", "job-5", "job-6")
        figures = store.figures(now_ms / 1000)
        assert figures == scaler.QueueFigures(waiting=4, active=2, oldest_wait_seconds=12.0)

        store.report("w1", {"current": 2, "min": 1, "max": 3, "hold": False}, ttl=5)
        store.report("w2", {"current": 1, "min": 1, "max": 2, "hold": True}, ttl=5)
        assert store.reports() == {"w1": H(2, 1, 3), "w2": H(1, 1, 2, True)}

        assert store.plan() == Plan()
        store.save_plan(Plan({"w1": 3}, 5.0, "out"))
        assert store.plan() == Plan({"w1": 3}, 5.0, "out")

        assert store.take_lease("a", 5)
        assert not store.take_lease("b", 5)
        store.give_back_lease("b")  # not b's to give back
        assert not store.take_lease("b", 5)
        store.give_back_lease("a")
        assert store.take_lease("b", 5)
    finally:
        for pattern in (f"{bull}:*", f"morpheus:{queue}:*"):
            _, keys = redis.call("SCAN", 0, "MATCH", pattern, "COUNT", 1000)
            if keys:
                redis.call("DEL", *keys)
        redis.close()


def test_an_empty_queue_has_no_age(tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("redis://127.0.0.1:6379/15")
    redis = scaler.Redis(str(url_file), timeout=2)
    try:
        redis.call("PING")
    except scaler.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    try:
        store = scaler.QueueStore(redis, f"autoscale-empty-{tmp_path.name[-8:]}")
        assert store.figures(1e9) == scaler.QueueFigures(0, 0, 0.0)
    finally:
        redis.close()


def test_redis_errors_say_what_went_wrong(tmp_path):
    redis = scaler.Redis(str(tmp_path / "no-url"), timeout=1)
    with pytest.raises(scaler.RedisError, match="cannot read the Redis URL"):
        redis.call("PING")


# --- Figures for the textfile collector ----------------------------------------------------------
def test_the_figures_parse_as_prometheus_text():
    config = scaler.parse_config(GOOD)
    found = scaler.survey(
        [
            container("morpheus-worker-0"),
            container("morpheus-worker-auto-blue-1", autoscaled=True, index=1),
            container("morpheus-worker-auto-blue-2", autoscaled=True, index=2),
        ],
        "morpheus-worker",
        1,
        draining=["morpheus-worker-auto-blue-2"],
    )
    text = scaler.render_metrics(
        found,
        2,
        config,
        Q(3, 1, 7.5),
        Plan({"w1": 2}, 123.0, "out"),
        {"added": 2, "drained": 1},
        True,
        456.0,
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    m = "morpheus_worker_autoscaler"
    assert samples[(f"{m}_workers", (("state", "running"),))] == 2
    assert samples[(f"{m}_workers", (("state", "draining"),))] == 1
    assert samples[(f"{m}_target_workers", ())] == 2
    assert samples[(f"{m}_min_workers", ())] == 1
    assert samples[(f"{m}_max_workers", ())] == 3
    assert samples[(f"{m}_hold", ())] == 0
    assert samples[(f"{m}_up", ())] == 1
    assert samples[(f"{m}_last_change_timestamp_seconds", ())] == 123
    assert samples[(f"{m}_queue_jobs", (("state", "waiting"),))] == 3
    assert samples[(f"{m}_queue_oldest_wait_seconds", ())] == 7.5
    assert samples[(f"{m}_containers_total", (("action", "added"),))] == 2


def test_a_failed_round_still_writes_its_figures():
    config = scaler.parse_config(GOOD)
    text = scaler.render_metrics(None, None, config, None, None, {"added": 0}, False, 1.0)
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "morpheus_worker_autoscaler_up" in names
    assert "morpheus_worker_autoscaler_workers" not in names
    assert "morpheus_worker_autoscaler_up 0" in text


# --- The agent on one host: a stand-in for Docker, the machine's real Redis ----------------------
class FakeDocker:
    """Docker's containers as the agent sees them through the API, kept in a dict; the
    calls that change something are recorded. A stop ends the container at once."""

    def __init__(self, template):
        self.containers = {}
        self.calls = []
        self.add("morpheus-worker-0", template)

    def add(self, name, inspect, state="running"):
        inspect = json.loads(json.dumps(inspect))
        inspect.update({"Id": f"id-{name}", "Name": f"/{name}", "State": {"Status": state}})
        self.containers[name] = inspect
        return inspect

    def _by_id(self, ident):
        return next(c for n, c in self.containers.items() if ident in (c["Id"], n))

    def workers(self):
        return [
            scaler.Container(c["Id"], name, c["State"]["Status"], c["Config"]["Labels"])
            for name, c in self.containers.items()
        ]

    def inspect(self, ident):
        return self._by_id(ident)

    def create(self, name, body):
        self.calls.append(("create", name))
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        self.add(name, {"Config": config, "HostConfig": body["HostConfig"]}, "created")
        return f"id-{name}"

    def start(self, ident):
        self.calls.append(("start", self._by_id(ident)["Name"][1:]))
        self._by_id(ident)["State"]["Status"] = "running"

    def keep_down(self, ident):
        self.calls.append(("keep_down", self._by_id(ident)["Name"][1:]))

    def stop(self, ident, stop_timeout):
        container = self._by_id(ident)
        self.calls.append(("stop", container["Name"][1:], stop_timeout))
        container["State"] = {
            "Status": "exited",
            "ExitCode": 0,
            "FinishedAt": "0001-01-01T00:00:00Z",
        }

    def remove(self, ident):
        name = self._by_id(ident)["Name"][1:]
        self.calls.append(("remove", name))
        del self.containers[name]

    def names(self):
        return sorted(self.containers)

    def made(self, action):
        return [call[1] for call in self.calls if call[0] == action]


@pytest.fixture()
def host_agent(tmp_path):
    """An agent for host w1 (1 to 3 workers, no cooldown) on a queue of its own in the
    machine's Redis (database 15), with its Docker stood in for."""
    url_file = tmp_path / "url"
    url_file.write_text("redis://127.0.0.1:6379/15")
    redis = scaler.Redis(str(url_file), timeout=2)
    try:
        redis.call("PING")
    except scaler.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    queue = f"autoscale-agent-{uuid.uuid4().hex[:8]}"
    template = json.loads(json.dumps(TEMPLATE))
    template["Config"]["Env"].append(f"MORPHEUS_QUEUE_NAME={queue}")
    template["Config"]["Labels"]["org.morpheus.slot"] = "blue"
    template["Config"]["Env"][2] = "MORPHEUS_WORKER_METRICS_PORT=9101"
    config = scaler.parse_config(
        {
            **GOOD,
            "host": "w1",
            "cooldown_seconds": "0",
            "redis_url_file": str(url_file),
            "textfile": str(tmp_path / "morpheus_worker_autoscaler.prom"),
            "state_dir": str(tmp_path / "state"),
        }
    )
    docker = FakeDocker(template)
    agent = scaler.Agent(config, docker=docker, redis=redis)
    yield SimpleNamespace(agent=agent, docker=docker, redis=redis, bull=f"bull:{queue}")
    for pattern in (f"bull:{queue}:*", f"morpheus:{queue}:*"):
        _, keys = redis.call("SCAN", 0, "MATCH", pattern, "COUNT", 1000)
        if keys:
            redis.call("DEL", *keys)
    redis.close()


def settle():
    """Let the drains the agent started in threads make their call."""
    for thread in threading.enumerate():
        if thread.name.startswith("stop "):
            thread.join(timeout=5)


def test_the_agent_adds_copies_for_a_backlog_and_drains_them_when_it_is_gone(
    host_agent, caplog, tmp_path
):
    agent, docker, redis, bull = (
        host_agent.agent,
        host_agent.docker,
        host_agent.redis,
        host_agent.bull,
    )
    caplog.set_level("INFO", logger="morpheus-worker-autoscaler")
    redis.call("LPUSH", f"{bull}:wait", *[f"job-{n}" for n in range(10)])
    agent.round()
    assert docker.made("create") == ["morpheus-worker-auto-blue-1", "morpheus-worker-auto-blue-2"]
    assert docker.made("start") == docker.made("create")
    copy = docker.inspect("morpheus-worker-auto-blue-2")
    assert "MORPHEUS_WORKER_METRICS_PORT=9103" in copy["Config"]["Env"]
    assert copy["HostConfig"] == TEMPLATE["HostConfig"]
    assert any(r.message.startswith("scale out: 10 waiting") for r in caplog.records)
    text = (tmp_path / "morpheus_worker_autoscaler.prom").read_text()
    assert 'morpheus_worker_autoscaler_workers{state="running"} 3' in text
    assert "morpheus_worker_autoscaler_target_workers 3" in text

    # The queue empties: the newest go first, each told to stop the way docker stop does.
    redis.call("DEL", f"{bull}:wait")
    agent.round()
    settle()
    assert docker.made("keep_down") == [
        "morpheus-worker-auto-blue-2",
        "morpheus-worker-auto-blue-1",
    ]
    assert ("stop", "morpheus-worker-auto-blue-2", 660) in docker.calls
    assert set(json.loads((tmp_path / "state" / "draining.json").read_text())) == {
        "morpheus-worker-auto-blue-1",
        "morpheus-worker-auto-blue-2",
    }
    assert "morpheus-worker-0" not in docker.made("stop")

    # Once they have exited they are removed, and said to have drained.
    agent.round()
    assert docker.names() == ["morpheus-worker-0"]
    assert sorted(docker.made("remove")) == [
        "morpheus-worker-auto-blue-1",
        "morpheus-worker-auto-blue-2",
    ]
    assert json.loads((tmp_path / "state" / "draining.json").read_text()) == {}
    drained = [r.message for r in caplog.records if ": drained " in r.message]
    assert len(drained) == 2 and all("exit code 0; removed" in m for m in drained), drained


def test_the_agent_leaves_the_host_alone_while_a_release_rolls_out(host_agent, caplog):
    agent, docker, redis, bull = (
        host_agent.agent,
        host_agent.docker,
        host_agent.redis,
        host_agent.bull,
    )
    docker.add("morpheus-worker-0-next", docker.inspect("morpheus-worker-0"))
    redis.call("LPUSH", f"{bull}:wait", *[f"job-{n}" for n in range(10)])
    agent.round()
    assert docker.calls == []
    assert any("a release is rolling out" in r.message for r in caplog.records)


def test_the_agent_replaces_a_worker_of_another_release(host_agent):
    agent, docker, redis, bull = (
        host_agent.agent,
        host_agent.docker,
        host_agent.redis,
        host_agent.bull,
    )
    old = json.loads(json.dumps(docker.inspect("morpheus-worker-0")))
    old["Config"]["Labels"].update(
        {
            "org.morpheus.release": "r1",
            "org.morpheus.autoscaled": "true",
            "org.morpheus.autoscale.index": "1",
        }
    )
    docker.add("morpheus-worker-auto-green-1", old)
    redis.call("LPUSH", f"{bull}:wait", *[f"job-{n}" for n in range(5)])
    agent.round()
    settle()
    assert docker.made("keep_down") == ["morpheus-worker-auto-green-1"]
    # Its replacement runs the release of morpheus-worker-0, on its slot.
    assert docker.made("create") == ["morpheus-worker-auto-blue-1"]


def test_the_agent_does_not_copy_a_worker_out_of_its_hardening(host_agent, caplog):
    agent, docker, redis, bull = (
        host_agent.agent,
        host_agent.docker,
        host_agent.redis,
        host_agent.bull,
    )
    docker.inspect("morpheus-worker-0")["HostConfig"]["CapDrop"] = []
    redis.call("LPUSH", f"{bull}:wait", *[f"job-{n}" for n in range(10)])
    agent.round()
    assert docker.made("create") == []
    assert any(
        "is not fit to copy (it does not drop every capability)" in r.message
        for r in caplog.records
    )


def test_a_drain_lost_by_a_restart_is_started_again_after_the_stop_timeout(host_agent, tmp_path):
    agent, docker = host_agent.agent, host_agent.docker
    added = json.loads(json.dumps(docker.inspect("morpheus-worker-0")))
    added["Config"]["Labels"].update(
        {"org.morpheus.autoscaled": "true", "org.morpheus.autoscale.index": "1"}
    )
    docker.add("morpheus-worker-auto-blue-1", added)
    # Its drain began 5 s ago: left alone, and not counted as a worker taking jobs.
    agent.draining = {"morpheus-worker-auto-blue-1": time.time() - 5}
    agent.round()
    settle()
    assert docker.made("stop") == []
    # Past its stop timeout (660 s) and a minute: stopped again.
    agent.draining = {"morpheus-worker-auto-blue-1": time.time() - 721}
    agent.round()
    settle()
    assert docker.made("stop") == ["morpheus-worker-auto-blue-1"]
