"""Panels rendered by a RunPod serverless endpoint.

The client speaks RunPod's queue-based endpoint API:

- ``POST {base}/v2/{endpoint_id}/run`` with ``{"input": {...}}`` answers
  ``{"id": ..., "status": "IN_QUEUE"}``;
- ``GET {base}/v2/{endpoint_id}/status/{id}`` answers the job with ``status`` one of
  IN_QUEUE, IN_PROGRESS, COMPLETED (with ``output``), FAILED (with ``error``), CANCELLED,
  TIMED_OUT, plus ``delayTime`` / ``executionTime`` in milliseconds;
- ``POST {base}/v2/{endpoint_id}/cancel/{id}`` cancels a job we no longer wait for.

Every request has a timeout; 429 is retried after ``Retry-After``, 5xx, network errors
and answers that cannot be decoded a bounded number of times with exponential backoff; a
circuit breaker makes an outage fail fast and lets a trial call through after a pause.
Every request that gets no usable answer counts against the circuit, whatever the error.
The API key goes only into the ``Authorization`` header and is never logged.

Waits (backoff, polling) end early when the job's stop flag is set
(:mod:`morpheus.cancellation`); a job we stop waiting for is cancelled on RunPod.

The endpoint draws the art; captions and balloons are lettered here, with the lettering
the local provider uses too (:mod:`morpheus.providers.lettering`), so the text in a panel
is always exactly the novel's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from PIL import Image, ImageOps, UnidentifiedImageError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from morpheus import cancellation
from morpheus.cancellation import Cancelled
from morpheus.pipeline.script import Panel
from morpheus.providers.base import ProviderError
from morpheus.providers.breaker import CircuitBreaker, CircuitOpenError
from morpheus.providers.canvas import to_png
from morpheus.providers.lettering import letter
from morpheus.providers.metrics import observe

if TYPE_CHECKING:
    from morpheus.settings import Settings

log = structlog.get_logger(__name__)

PROVIDER = "runpod"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PENDING = frozenset(("IN_QUEUE", "IN_PROGRESS"))
NEGATIVE_PROMPT = "text, letters, words, speech bubbles, captions, watermark, signature"


@dataclass(frozen=True)
class RunPodConfig:
    base_url: str
    endpoint_id: str
    api_key: str = field(repr=False)
    connect_timeout: float = 5.0
    request_timeout: float = 15.0
    job_deadline: float = 180.0  # our own limit for one job, queue time included
    max_attempts: int = 4  # per HTTP request
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    poll_initial: float = 0.25
    poll_max: float = 3.0
    failure_threshold: int = 5
    reset_timeout: float = 30.0


class _Transient(Exception):
    def __init__(self, message: str, outcome: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RunPodClient:
    """A small, bounded client of one RunPod serverless endpoint."""

    def __init__(
        self,
        config: RunPodConfig,
        *,
        breaker: CircuitBreaker | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = cancellation.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.endpoint_id:
            raise ValueError("a RunPod endpoint id is required")
        if not config.api_key:
            raise ValueError("a RunPod API key is required")
        self.config = config
        self.breaker = breaker or CircuitBreaker(
            f"{PROVIDER}:{config.endpoint_id}",
            failure_threshold=config.failure_threshold,
            reset_timeout=config.reset_timeout,
        )
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            timeout=httpx.Timeout(config.request_timeout, connect=config.connect_timeout),
            headers={
                "Authorization": f"Bearer {config.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RunPodClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- one HTTP request, retried within bounds ----------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.config.max_retry_after)
        backoff = min(
            self.config.backoff_max,
            self.config.backoff_initial * 2 ** (state.attempt_number - 1),
        )
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security

    def _request(self, operation: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(operation, method, path, body)
        except _Transient as exc:
            raise ProviderError(
                f"RunPod {operation} failed after {self.config.max_attempts} attempts: {exc}",
                retryable=True,
                outcome=exc.outcome,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, operation: str, method: str, path: str, body: Any) -> dict[str, Any]:
        try:
            self.breaker.before_call()
        except CircuitOpenError as exc:
            observe(PROVIDER, operation, "circuit_open", 0.0)
            raise ProviderError(
                f"RunPod is unavailable, failing fast: {exc}",
                retryable=True,
                outcome="circuit_open",
            ) from None
        start = time.perf_counter()
        outcome = "ok"
        try:
            try:
                response = self._http.request(method, path, json=body)
            except Exception as exc:
                # Whatever ended the exchange counts against the circuit: a trial call
                # whose failure went unrecorded would keep it failing fast for good.
                self.breaker.record_failure()
                outcome, transient = _exchange_failure(exc)
                if transient is None:
                    raise
                raise transient from None
            status = response.status_code
            if status == 429:
                outcome = "rate_limited"
                # The service is up, just busy: not a failure for the circuit.
                self.breaker.record_success()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise _Transient("rate limited (HTTP 429)", outcome, retry_after)
            if status >= 500:
                outcome = "server_error"
                self.breaker.record_failure()
                raise _Transient(f"server error (HTTP {status})", outcome)
            self.breaker.record_success()
            if status in (401, 403):
                outcome = "unauthorized"
                raise ProviderError(
                    f"RunPod refused the API key (HTTP {status}): check runpod_api_key",
                    retryable=False,
                    outcome=outcome,
                )
            if status >= 400:
                outcome = "client_error"
                detail = response.text[:200].strip()
                raise ProviderError(
                    f"RunPod {operation} was refused (HTTP {status}): {detail}",
                    retryable=False,
                    outcome=outcome,
                )
            try:
                data = response.json()
            except ValueError:
                outcome = "bad_response"
                raise ProviderError(
                    f"RunPod {operation} answered with something that is not JSON",
                    retryable=False,
                    outcome=outcome,
                ) from None
            if not isinstance(data, dict):
                outcome = "bad_response"
                raise ProviderError(
                    f"RunPod {operation} answered with unexpected JSON",
                    retryable=False,
                    outcome=outcome,
                )
            return data
        finally:
            observe(PROVIDER, operation, outcome, time.perf_counter() - start)

    # --- the job API --------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join(("", "v2", self.config.endpoint_id, *parts))

    def submit(self, job_input: dict[str, Any]) -> dict[str, Any]:
        job = self._request("run", "POST", self._path("run"), {"input": job_input})
        if not job.get("id"):
            raise ProviderError("RunPod accepted the job but returned no job id", retryable=True)
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        return self._request("status", "GET", self._path("status", job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("cancel", "POST", self._path("cancel", job_id))

    def health(self) -> dict[str, Any]:
        """The endpoint's queue and worker counts (``jobs``, ``workers``)."""
        return self._request("health", "GET", self._path("health"))

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.cancel(job_id)
        except ProviderError as exc:
            log.warning("runpod cancel failed", job_id=job_id, error=exc.message)

    def generate(self, job_input: dict[str, Any]) -> bytes:
        """Submit a job, wait for it within our deadline, and return the PNG it made."""
        start = time.perf_counter()
        outcome = "ok"
        try:
            return self._generate(job_input)
        except ProviderError as exc:
            outcome = exc.outcome
            raise
        except Cancelled:
            outcome = "cancelled"
            raise
        finally:
            observe(PROVIDER, "job", outcome, time.perf_counter() - start)

    def _generate(self, job_input: dict[str, Any]) -> bytes:
        deadline = self._clock() + self.config.job_deadline
        cancellation.check()
        job = self.submit(job_input)
        job_id = str(job["id"])
        delay = self.config.poll_initial
        while True:
            state = job.get("status")
            if state == "COMPLETED":
                log.debug(
                    "runpod job completed",
                    job_id=job_id,
                    delay_ms=job.get("delayTime"),
                    execution_ms=job.get("executionTime"),
                )
                return decode_output(job.get("output"))
            if state == "FAILED":
                raise _job_error(
                    f"RunPod job {job_id} failed: {job.get('error') or 'no reason given'}",
                    "job_failed",
                )
            if state == "CANCELLED":
                raise _job_error(f"RunPod job {job_id} was cancelled", "job_cancelled")
            if state == "TIMED_OUT":
                raise _job_error(f"RunPod job {job_id} timed out on RunPod", "job_timed_out")
            if state not in PENDING:
                raise _job_error(
                    f"RunPod job {job_id} has an unknown status {state!r}",
                    "bad_response",
                    retryable=False,
                )
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._cancel_quietly(job_id)
                raise _job_error(
                    f"RunPod job {job_id} did not finish within {self.config.job_deadline:g}s; "
                    "it was cancelled",
                    "deadline",
                )
            try:
                cancellation.check()
                self._sleep(min(delay, remaining))
            except Cancelled:
                self._cancel_quietly(job_id)  # nobody will collect the image: free the GPU
                raise
            delay = min(self.config.poll_max, delay * 1.5)
            try:
                job = self.status(job_id)
            except ProviderError:
                self._cancel_quietly(job_id)
                raise


def _exchange_failure(exc: Exception) -> tuple[str, _Transient | None]:
    """The metrics outcome of a request that got no answer, and the retryable error to
    raise for it (None: raise ``exc`` itself)."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", _Transient(f"request timed out ({name})", "timeout")
    if isinstance(exc, httpx.TransportError):
        return "connection_error", _Transient(f"connection failed ({name})", "connection_error")
    if isinstance(exc, httpx.DecodingError):
        # A garbled body (a broken gzip stream, say): the next answer may well be whole.
        message = f"the answer could not be decoded ({name})"
        return "bad_response", _Transient(message, "bad_response")
    return "error", None


def _job_error(message: str, outcome: str, *, retryable: bool = True) -> ProviderError:
    return ProviderError(message, retryable=retryable, outcome=outcome)


def decode_output(output: Any) -> bytes:
    """The PNG bytes from a job's ``output`` (base64, bare or in an ``image`` field)."""
    encoded: Any = output
    if isinstance(output, dict):
        encoded = output.get("image") or output.get("image_base64") or output.get("png")
        if encoded is None and isinstance(output.get("images"), list) and output["images"]:
            encoded = output["images"][0]
    elif isinstance(output, list) and output:
        encoded = output[0]
    if not isinstance(encoded, str) or not encoded:
        raise _job_error(
            "RunPod job completed without an image in its output", "bad_output", retryable=False
        )
    if encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[-1]
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _job_error(
            "RunPod job output is not valid base64", "bad_output", retryable=False
        ) from None
    if not data.startswith(PNG_SIGNATURE):
        raise _job_error("RunPod job output is not a PNG image", "bad_output", retryable=False)
    return data


_SETTING_PROMPTS = {
    "forest": "in a forest",
    "sea": "by the sea",
    "city": "in a city street",
    "mountain": "in the mountains",
    "field": "in open fields",
    "interior": "indoors, in a room",
}


def panel_prompt(panel: Panel) -> str:
    place = _SETTING_PROMPTS.get(panel.setting, "")
    when = "at night" if panel.time_of_day == "night" else "by day"
    who = ", ".join(panel.characters) if panel.characters else "no people"
    story = (panel.caption or " ".join(b.text for b in panel.balloons))[:300]
    return (
        f"comic book panel, clean ink line art, flat colours, {place} {when}; "
        f"characters: {who}; scene: {story}"
    )


class RunPodProvider:
    """Art from RunPod, lettering from us."""

    name = PROVIDER

    def __init__(self, client: RunPodClient) -> None:
        self.client = client

    def render(self, panel: Panel, width: int, height: int) -> bytes:
        start = time.perf_counter()
        outcome = "ok"
        try:
            art = self.client.generate(
                {
                    "prompt": panel_prompt(panel),
                    "negative_prompt": NEGATIVE_PROMPT,
                    "seed": panel.seed,
                    "width": width,
                    "height": height,
                    "panel": panel.to_dict(),
                }
            )
            try:
                img = Image.open(io.BytesIO(art)).convert("RGB")
            except (UnidentifiedImageError, OSError) as exc:
                raise ProviderError(
                    f"RunPod returned an unreadable image: {exc}", retryable=False
                ) from None
            # Letter at twice the size and scale down, as the local provider does, so
            # balloon outlines and text are smooth.
            img = ImageOps.fit(img, (width * 2, height * 2), method=Image.Resampling.LANCZOS)
            letter(img, panel)
            return to_png(img.reduce(2))
        except ProviderError:
            outcome = "error"
            raise
        except Cancelled:
            outcome = "cancelled"
            raise
        finally:
            observe(PROVIDER, "render", outcome, time.perf_counter() - start)

    def close(self) -> None:
        self.client.close()


_providers: dict[tuple[str, str, str], RunPodProvider] = {}
_providers_lock = threading.Lock()


def _secret(value: object) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def runpod_provider_from_settings(settings: Settings) -> RunPodProvider:
    """One provider (and so one circuit breaker) per endpoint per process."""
    endpoint_id = settings.runpod_endpoint_id or ""
    api_key = _secret(settings.runpod_api_key)
    if not endpoint_id:
        raise ValueError("provider is 'runpod' but MORPHEUS_RUNPOD_ENDPOINT_ID is not set")
    if not api_key:
        raise ValueError("provider is 'runpod' but MORPHEUS_RUNPOD_API_KEY is not set")
    key_id = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    cache_key = (settings.runpod_base_url, endpoint_id, key_id)
    with _providers_lock:
        provider = _providers.get(cache_key)
        if provider is None:
            config = RunPodConfig(
                base_url=settings.runpod_base_url, endpoint_id=endpoint_id, api_key=api_key
            )
            provider = RunPodProvider(RunPodClient(config))
            _providers[cache_key] = provider
        return provider
