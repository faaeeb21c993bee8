"""The RunPod client against our local fake of RunPod's API, over real HTTP: success,
slow jobs, failures, our own deadline (cancel sent), 429 backoff, 5xx retries, the
circuit breaker through an outage and back, metrics, and a key that never leaks."""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import httpx
import pytest
from fakes.fake_runpod import TEST_API_KEY, FakeRunPod
from morpheus import cancellation
from morpheus.cancellation import Cancelled, StopFlag
from morpheus.pipeline.script import Balloon, Panel
from morpheus.providers import ProviderError, get_provider
from morpheus.providers.breaker import CircuitBreaker, State
from morpheus.providers.local import LocalProvider
from morpheus.providers.runpod import (
    RunPodClient,
    RunPodConfig,
    RunPodProvider,
    decode_output,
    parse_retry_after,
)
from PIL import Image, ImageChops
from prometheus_client import REGISTRY

PANEL = Panel(
    number=1,
    chapter=1,
    scene=1,
    caption="The harbour at dawn.",
    balloons=[Balloon("Anna", "Is anyone there?")],
    characters=["Anna"],
    seed=4242,
    setting="sea",
)
JOB = {"prompt": "a harbour", "seed": 1, "width": 64, "height": 48}


@pytest.fixture
def fake() -> Iterator[FakeRunPod]:
    with FakeRunPod() as server:
        yield server


class Sleeps:
    """Records every wait the client asks for, and waits for real (briefly)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        time.sleep(min(seconds, 0.5))


def client_for(
    fake: FakeRunPod,
    sleeps: Callable[[float], None] | None = None,
    breaker: CircuitBreaker | None = None,
    **overrides: object,
) -> RunPodClient:
    values: dict[str, object] = {
        "base_url": fake.url,
        "endpoint_id": fake.endpoint_id,
        "api_key": TEST_API_KEY,
        "poll_initial": 0.02,
        "poll_max": 0.1,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "job_deadline": 10.0,
        "request_timeout": 5.0,
    }
    values.update(overrides)
    return RunPodClient(
        RunPodConfig(**values),
        breaker=breaker,  # type: ignore[arg-type]
        sleep=sleeps or Sleeps(),
    )


def errors(outcome: str, operation: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "morpheus_provider_errors_total",
            {"provider": "runpod", "operation": operation, "outcome": outcome},
        )
        or 0.0
    )


def test_success_returns_the_png_and_speaks_runpods_api(fake: FakeRunPod) -> None:
    png = client_for(fake).generate(JOB)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (64, 48)
    requests = fake.requests()
    assert [r.route for r in requests][:2] == ["run", "status"]
    assert requests[0].method == "POST" and requests[0].path == f"/v2/{fake.endpoint_id}/run"
    assert requests[1].method == "GET"
    assert requests[1].path.startswith(f"/v2/{fake.endpoint_id}/status/")
    assert all(r.authorized for r in requests)
    job = fake.job(requests[1].path.rsplit("/", 1)[1])
    assert job is not None and job.input == JOB


def test_health_reports_the_endpoints_jobs(fake: FakeRunPod) -> None:
    client = client_for(fake)
    client.generate(JOB)
    health = client.health()
    assert health["jobs"]["completed"] == 1
    assert set(health["workers"]) == {"idle", "running"}


def test_slow_job_is_polled_with_growing_intervals_until_done(fake: FakeRunPod) -> None:
    fake.set_behaviour(queue_seconds=0.2, run_seconds=0.3)
    sleeps = Sleeps()
    png = client_for(fake, sleeps).generate(JOB)
    assert png.startswith(b"\x89PNG")
    assert len(fake.requests("status")) >= 3
    assert sleeps.calls == sorted(sleeps.calls)  # backoff between polls never shrinks
    assert max(sleeps.calls) <= 0.1


def test_failed_job_raises_a_retryable_error_with_runpods_reason(fake: FakeRunPod) -> None:
    fake.set_behaviour(mode="fail", error_message="CUDA out of memory")
    before = errors("job_failed", "job")
    with pytest.raises(ProviderError, match=r"RunPod job .* failed: CUDA out of memory") as caught:
        client_for(fake).generate(JOB)
    assert caught.value.retryable is True
    assert errors("job_failed", "job") == before + 1


def test_job_timed_out_on_runpod(fake: FakeRunPod) -> None:
    fake.set_behaviour(mode="timeout")
    with pytest.raises(ProviderError, match="timed out on RunPod"):
        client_for(fake).generate(JOB)


def test_our_deadline_passes_and_the_job_is_cancelled(fake: FakeRunPod) -> None:
    fake.set_behaviour(mode="hang")
    with pytest.raises(ProviderError, match=r"did not finish within 0\.3s; it was cancelled") as c:
        client_for(fake, job_deadline=0.3).generate(JOB)
    assert c.value.retryable is True
    cancels = fake.requests("cancel")
    assert len(cancels) == 1 and cancels[0].method == "POST" and cancels[0].status == 200
    job = fake.job(cancels[0].path.rsplit("/", 1)[1])
    assert job is not None and job.cancelled


def test_429_waits_for_retry_after_then_succeeds(fake: FakeRunPod) -> None:
    fake.fail_next(429, 2, retry_after=0.15, routes=("run",))
    sleeps = Sleeps()
    before = errors("rate_limited", "run")
    assert client_for(fake, sleeps).generate(JOB).startswith(b"\x89PNG")
    runs = fake.requests("run")
    assert [r.status for r in runs] == [429, 429, 200]
    assert sleeps.calls[:2] == [0.15, 0.15]
    assert errors("rate_limited", "run") == before + 2


def test_retry_after_is_capped(fake: FakeRunPod) -> None:
    fake.fail_next(429, 1, retry_after=3600, routes=("run",))
    sleeps = Sleeps()
    client_for(fake, sleeps, max_retry_after=0.05).generate(JOB)
    assert sleeps.calls[0] == 0.05


def test_5xx_is_retried_then_succeeds(fake: FakeRunPod) -> None:
    fake.fail_next(503, 2, routes=("status",))
    assert client_for(fake).generate(JOB).startswith(b"\x89PNG")
    statuses = [r.status for r in fake.requests("status")]
    assert statuses[:3] == [503, 503, 200]


def test_5xx_retries_are_bounded(fake: FakeRunPod) -> None:
    fake.fail_next(500, 10, routes=("run",))
    with pytest.raises(
        ProviderError,
        match=r"RunPod run failed after 3 attempts: server error "
        r"\(HTTP 500\)",
    ) as caught:
        client_for(fake, max_attempts=3).generate(JOB)
    assert caught.value.retryable is True
    assert len(fake.requests("run")) == 3


def test_a_wrong_key_is_not_retried_and_never_shown(
    fake: FakeRunPod, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "test-only-wrong-key-0123456789"
    caplog.set_level(logging.DEBUG)
    client = client_for(fake, api_key=wrong)
    with pytest.raises(ProviderError, match=r"refused the API key \(HTTP 401\)") as caught:
        client.generate(JOB)
    assert caught.value.retryable is False
    assert len(fake.requests()) == 1 and not fake.requests()[0].authorized
    out = capsys.readouterr()
    for text in (str(caught.value), repr(client.config), caplog.text, out.out, out.err):
        assert wrong not in text


def test_the_key_is_not_logged_on_success(
    fake: FakeRunPod, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    client_for(fake).generate(JOB)
    out = capsys.readouterr()
    assert TEST_API_KEY not in caplog.text + out.out + out.err


def test_breaker_opens_in_an_outage_fails_fast_and_recovers(fake: FakeRunPod) -> None:
    clock = SimpleNamespace(now=0.0)
    breaker = CircuitBreaker(
        "runpod:outage-test", failure_threshold=3, reset_timeout=30, clock=lambda: clock.now
    )
    client = client_for(fake, breaker=breaker, max_attempts=2)
    fake.set_outage(True)
    with pytest.raises(ProviderError, match=r"after 2 attempts: server error \(HTTP 503\)"):
        client.generate(JOB)
    with pytest.raises(ProviderError):
        client.generate(JOB)  # the third failure opens the circuit
    assert breaker.state is State.OPEN
    calls = len(fake.requests())
    assert calls == 3
    before = errors("circuit_open", "run")
    with pytest.raises(ProviderError, match="RunPod is unavailable, failing fast") as caught:
        client.generate(JOB)
    assert caught.value.retryable is True
    assert len(fake.requests()) == calls  # failed fast: no request was made
    assert errors("circuit_open", "run") == before + 1

    fake.set_outage(False)
    clock.now += 30  # the reset timeout passes: one trial call goes through
    assert breaker.state is State.HALF_OPEN
    assert client.generate(JOB).startswith(b"\x89PNG")
    assert breaker.state is State.CLOSED
    assert client.generate(JOB).startswith(b"\x89PNG")


def test_breaker_reopens_when_the_trial_call_fails(fake: FakeRunPod) -> None:
    clock = SimpleNamespace(now=0.0)
    breaker = CircuitBreaker(
        "runpod:reopen-test", failure_threshold=1, reset_timeout=10, clock=lambda: clock.now
    )
    client = client_for(fake, breaker=breaker, max_attempts=1)
    fake.set_outage(True)
    with pytest.raises(ProviderError):
        client.generate(JOB)
    clock.now += 10
    with pytest.raises(ProviderError, match="HTTP 503"):
        client.generate(JOB)  # the trial fails
    assert breaker.state is State.OPEN
    calls = len(fake.requests())
    with pytest.raises(ProviderError, match="failing fast"):
        client.generate(JOB)
    assert len(fake.requests()) == calls


def test_a_garbled_trial_call_opens_the_circuit_again_and_it_closes_later(
    fake: FakeRunPod,
) -> None:
    clock = SimpleNamespace(now=0.0)
    breaker = CircuitBreaker(
        "runpod:garbled-test", failure_threshold=1, reset_timeout=10, clock=lambda: clock.now
    )
    client = client_for(fake, breaker=breaker, max_attempts=1)
    fake.set_outage(True)
    with pytest.raises(ProviderError):
        client.generate(JOB)
    assert breaker.state is State.OPEN
    fake.set_outage(False)

    # The trial call is served, but its answer arrives as a broken gzip stream.
    fake.garble_next(1, routes=("run",))
    clock.now += 10
    with pytest.raises((ProviderError, httpx.HTTPError)) as caught:
        client.generate(JOB)
    assert fake.requests("run")[-1].status == 200
    assert breaker.state is State.OPEN  # counted as the failure it is
    assert isinstance(caught.value, ProviderError)
    assert caught.value.retryable is True
    assert "could not be decoded (DecodingError)" in caught.value.message
    assert errors("bad_response", "run") >= 1

    calls = len(fake.requests())
    with pytest.raises(ProviderError, match="failing fast"):
        client.generate(JOB)
    assert len(fake.requests()) == calls
    clock.now += 10  # the next trial gets a whole answer: the circuit closes
    assert client.generate(JOB).startswith(b"\x89PNG")
    assert breaker.state is State.CLOSED
    assert client.generate(JOB).startswith(b"\x89PNG")


def test_a_garbled_answer_is_retried_within_bounds(fake: FakeRunPod) -> None:
    fake.garble_next(2, routes=("status",))
    assert client_for(fake, max_attempts=3).generate(JOB).startswith(b"\x89PNG")
    statuses = fake.requests("status")
    assert len(statuses) >= 3 and all(r.status == 200 for r in statuses)

    fake.garble_next(3, routes=("run",))
    with pytest.raises(ProviderError, match=r"run failed after 3 attempts: the answer could not"):
        client_for(fake, max_attempts=3).generate(JOB)


def test_a_stopped_step_stops_polling_and_cancels_the_job_on_runpod(fake: FakeRunPod) -> None:
    fake.set_behaviour(mode="hang")
    client = client_for(fake, cancellation.sleep, poll_initial=0.5, poll_max=0.5)
    flag = StopFlag()
    threading.Timer(0.3, flag.set, args=("the job timed out",)).start()
    started = time.monotonic()
    with cancellation.watching(flag), pytest.raises(Cancelled, match="the job timed out"):
        client.generate(JOB)
    assert time.monotonic() - started < 3.0
    cancels = fake.requests("cancel")
    assert [r.status for r in cancels] == [200]
    job = fake.job(cancels[0].path.rsplit("/", 1)[1])
    assert job is not None and job.cancelled
    with cancellation.watching(flag), pytest.raises(Cancelled):
        client.generate(JOB)  # a stopped step submits nothing more
    assert len(fake.requests("run")) == 1


def test_unreachable_endpoint_fails_within_bounds() -> None:
    config = RunPodConfig(
        base_url="http://127.0.0.1:9",
        endpoint_id="e",
        api_key=TEST_API_KEY,
        connect_timeout=0.5,
        request_timeout=0.5,
        max_attempts=2,
        backoff_initial=0.01,
    )
    client = RunPodClient(config, sleep=lambda _s: None)
    with pytest.raises(ProviderError, match=r"failed after 2 attempts: connection failed"):
        client.generate(JOB)


def test_latency_is_observed(fake: FakeRunPod) -> None:
    labels = {"provider": "runpod", "operation": "run", "outcome": "ok"}
    before = REGISTRY.get_sample_value("morpheus_provider_request_seconds_count", labels) or 0.0
    client_for(fake).generate(JOB)
    after = REGISTRY.get_sample_value("morpheus_provider_request_seconds_count", labels)
    assert after == before + 1


# --- the provider -------------------------------------------------------------------------


def test_provider_letters_the_art_it_gets_back(fake: FakeRunPod) -> None:
    provider = RunPodProvider(client_for(fake))
    png = provider.render(PANEL, 320, 240)
    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size == (320, 240)
    sent = next(iter(fake.state.jobs.values())).input
    assert sent["seed"] == PANEL.seed and (sent["width"], sent["height"]) == (320, 240)
    assert "by the sea" in sent["prompt"] and "Anna" in sent["prompt"]
    assert Panel.from_dict(sent["panel"]) == PANEL
    art = LocalProvider(supersample=1).render_image(PANEL, 320, 240, lettering=False)
    assert ImageChops.difference(img, art).getbbox() is not None  # balloons were added


def test_provider_is_shared_per_endpoint_so_the_breaker_is_too(fake: FakeRunPod) -> None:
    settings = SimpleNamespace(
        provider="runpod",
        runpod_base_url=fake.url,
        runpod_endpoint_id=fake.endpoint_id,
        runpod_api_key=TEST_API_KEY,
    )
    first = get_provider(settings)  # type: ignore[arg-type]
    assert isinstance(first, RunPodProvider)
    assert get_provider(settings) is first  # type: ignore[arg-type]
    assert first.render(PANEL, 160, 120).startswith(b"\x89PNG")


# --- output and header parsing ------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"rest"
B64 = base64.b64encode(PNG).decode()

OUTPUTS = [
    pytest.param({"image": B64}, id="image"),
    pytest.param({"image_base64": B64}, id="image_base64"),
    pytest.param({"images": [B64]}, id="images-list"),
    pytest.param(B64, id="bare-string"),
    pytest.param(f"data:image/png;base64,{B64}", id="data-url"),
    pytest.param([B64], id="list"),
]


@pytest.mark.parametrize("output", OUTPUTS)
def test_decode_output(output: object) -> None:
    assert decode_output(output) == PNG


BAD_OUTPUTS = [
    pytest.param(None, "completed without an image", id="none"),
    pytest.param({}, "completed without an image", id="empty-dict"),
    pytest.param({"image": 5}, "completed without an image", id="not-a-string"),
    pytest.param("!!not base64!!", "not valid base64", id="not-base64"),
    pytest.param(base64.b64encode(b"GIF89a").decode(), "not a PNG image", id="not-png"),
]


@pytest.mark.parametrize(("output", "message"), BAD_OUTPUTS)
def test_decode_output_failures(output: object, message: str) -> None:
    with pytest.raises(ProviderError, match=message) as caught:
        decode_output(output)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("-4", 0.0),
        (None, None),
        ("soon", None),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=40.0) == expected
