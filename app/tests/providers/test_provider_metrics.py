"""Provider errors and the circuit's state as a scrape shows them, through a RunPod outage.

The RunPod client talks to the local fake of RunPod's API over real HTTP; the figures are
read from the exposition text a worker's /metrics serves (the process's registry).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fakes.fake_runpod import TEST_API_KEY, FakeRunPod
from morpheus.providers import ProviderError
from morpheus.providers.breaker import CircuitBreaker
from morpheus.providers.runpod import RunPodClient, RunPodConfig
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

JOB = {"prompt": "a harbour", "seed": 1, "width": 64, "height": 48}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def fake() -> Iterator[FakeRunPod]:
    with FakeRunPod() as server:
        yield server


def scrape() -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_errors_by_outcome_and_the_circuit_state_through_an_outage(fake: FakeRunPod) -> None:
    clock = SimpleNamespace(now=0.0)
    name = "runpod:metrics-test"
    breaker = CircuitBreaker(name, failure_threshold=2, reset_timeout=30, clock=lambda: clock.now)
    client = RunPodClient(
        RunPodConfig(
            base_url=fake.url,
            endpoint_id=fake.endpoint_id,
            api_key=TEST_API_KEY,
            poll_initial=0.02,
            poll_max=0.1,
            backoff_initial=0.01,
            backoff_max=0.05,
            max_attempts=2,
        ),
        breaker=breaker,
        sleep=lambda _seconds: None,
    )
    errors = "morpheus_provider_errors_total"
    state = "morpheus_provider_circuit_state"
    labels = {"provider": "runpod", "operation": "run"}
    before = scrape()
    assert value(before, state, provider=name) == 0  # closed

    fake.set_outage(True)
    with pytest.raises(ProviderError, match=r"HTTP 503"):
        client.generate(JOB)  # two failed requests: the circuit opens
    with pytest.raises(ProviderError, match="failing fast"):
        client.generate(JOB)  # refused without a request
    during = scrape()
    assert value(during, state, provider=name) == 2  # open

    def delta(outcome: str) -> float:
        return (value(during, errors, **labels, outcome=outcome) or 0.0) - (
            value(before, errors, **labels, outcome=outcome) or 0.0
        )

    assert delta("server_error") == 2
    assert delta("circuit_open") == 1
    # Latency is recorded for the failed calls too, under the same outcome.
    seconds = "morpheus_provider_request_seconds_count"
    assert (value(during, seconds, **labels, outcome="server_error") or 0) >= 2

    fake.set_outage(False)
    clock.now += 30  # the reset timeout passes: the next call is the trial
    assert client.generate(JOB).startswith(b"\x89PNG")
    assert value(scrape(), state, provider=name) == 0  # closed again
    # The provider label holds provider names and endpoints, never a job or request id.
    providers = {dict(key[1]).get("provider") for key in scrape() if key[0] == errors}
    assert providers <= {"runpod", "local"}, providers
