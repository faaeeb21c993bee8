"""A local stand-in for RunPod's serverless HTTP API, for tests and development. It
lives with the tests, outside the package, so that it (and its test-only key) never
reaches the wheel or the image.

It answers the same routes with the same JSON shapes as RunPod (``/v2/{endpoint}/run``,
``/status/{id}``, ``/cancel/{id}``, ``/health``), checks the ``Authorization`` header,
and draws real PNGs with the local provider. Its behaviour is scriptable, from Python or
over HTTP (``/_control/...``): slow jobs, failing jobs, jobs that time out or hang,
429 and 5xx answers, a whole outage, and answers garbled on their way back (the request
is served, its gzip-encoded body arrives broken, as through a faulty proxy).

Run it on its own from ``app/tests``: ``python -m fakes.fake_runpod --port 8089``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from morpheus.pipeline.script import Panel
from morpheus.providers.canvas import to_png
from morpheus.providers.local import LocalProvider

TEST_API_KEY = "test-only-runpod-key"
TEST_ENDPOINT_ID = "fake-endpoint"
MODES = ("success", "fail", "timeout", "hang")


@dataclass
class Behaviour:
    """How new jobs behave. ``mode``: success, fail, timeout (RunPod's own TIMED_OUT) or
    hang (stays IN_PROGRESS until cancelled)."""

    mode: str = "success"
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    error_message: str = "handler raised an exception"


@dataclass
class Job:
    id: str
    input: dict[str, Any]
    created: float
    behaviour: Behaviour
    cancelled: bool = False
    output: dict[str, Any] | None = None


@dataclass
class Recorded:
    method: str
    path: str
    route: str
    status: int
    authorized: bool


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    routes: tuple[str, ...]


@dataclass
class _State:
    behaviour: Behaviour = field(default_factory=Behaviour)
    jobs: dict[str, Job] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: deque[_Failure] = field(default_factory=deque)
    garbles: deque[tuple[str, ...]] = field(default_factory=deque)
    outage: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _art(job_input: dict[str, Any]) -> bytes:
    """Draw what a model would: the scene's art, without lettering."""
    width = int(job_input.get("width", 512))
    height = int(job_input.get("height", 512))
    panel_data = job_input.get("panel")
    if isinstance(panel_data, dict):
        panel = Panel.from_dict(panel_data)
    else:
        panel = Panel(
            number=1,
            chapter=1,
            scene=1,
            caption=None,
            balloons=[],
            characters=[],
            seed=int(job_input.get("seed", 0)),
        )
    image = LocalProvider(supersample=1).render_image(panel, width, height, lettering=False)
    return to_png(image)


class FakeRunPod:
    """The fake server, run in a background thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = TEST_API_KEY,
        endpoint_id: str = TEST_ENDPOINT_ID,
    ) -> None:
        self.api_key = api_key
        self.endpoint_id = endpoint_id
        self.state = _State()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeRunPod:
        # A short poll interval lets stop() return quickly.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def __enter__(self) -> FakeRunPod:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- scripting --------------------------------------------------------------------------
    def set_behaviour(self, **changes: Any) -> None:
        names = {f.name for f in fields(Behaviour)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
        if "mode" in changes and changes["mode"] not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self.state.lock:
            current = asdict(self.state.behaviour)
            current.update(changes)
            self.state.behaviour = Behaviour(**current)

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: float | str | None = None,
        routes: tuple[str, ...] = ("run", "status", "cancel"),
    ) -> None:
        """Answer the next ``count`` requests on ``routes`` with ``status``."""
        with self.state.lock:
            for _ in range(count):
                self.state.failures.append(
                    _Failure(status, None if retry_after is None else str(retry_after), routes)
                )

    def garble_next(
        self, count: int = 1, *, routes: tuple[str, ...] = ("run", "status", "cancel")
    ) -> None:
        """Serve the next ``count`` requests on ``routes``, but send each answer as a
        gzip body that is broken after its header (``Content-Encoding: gzip``)."""
        with self.state.lock:
            self.state.garbles.extend([routes] * count)

    def set_outage(self, on: bool) -> None:
        """While on, every API request gets 503."""
        with self.state.lock:
            self.state.outage = on

    def reset(self) -> None:
        with self.state.lock:
            self.state.behaviour = Behaviour()
            self.state.failures.clear()
            self.state.garbles.clear()
            self.state.outage = False
            self.state.requests.clear()

    def requests(self, route: str | None = None) -> list[Recorded]:
        with self.state.lock:
            return [r for r in self.state.requests if route is None or r.route == route]

    def job(self, job_id: str) -> Job | None:
        with self.state.lock:
            return self.state.jobs.get(job_id)

    # --- the API ----------------------------------------------------------------------------
    def _job_view(self, job: Job) -> dict[str, Any]:
        b = job.behaviour
        delay_ms = int(b.queue_seconds * 1000)
        if job.cancelled:
            return {"id": job.id, "status": "CANCELLED", "delayTime": delay_ms}
        elapsed = time.monotonic() - job.created
        if elapsed < b.queue_seconds:
            return {"id": job.id, "status": "IN_QUEUE"}
        if elapsed < b.queue_seconds + b.run_seconds or b.mode == "hang":
            return {
                "id": job.id,
                "status": "IN_PROGRESS",
                "delayTime": delay_ms,
                "workerId": "fake-worker-1",
            }
        execution_ms = int(b.run_seconds * 1000)
        done = {
            "id": job.id,
            "delayTime": delay_ms,
            "executionTime": execution_ms,
            "workerId": "fake-worker-1",
        }
        if b.mode == "fail":
            return {**done, "status": "FAILED", "error": b.error_message}
        if b.mode == "timeout":
            return {**done, "status": "TIMED_OUT"}
        if job.output is None:
            try:
                job.output = {"image": base64.b64encode(_art(job.input)).decode("ascii")}
            except (ValueError, TypeError, OSError) as exc:  # as a real handler would fail
                return {**done, "status": "FAILED", "error": f"render failed: {exc}"}
        return {**done, "status": "COMPLETED", "output": job.output}

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        """Route one request; returns (status, body, extra headers)."""
        path = path.split("?", 1)[0]
        if path.startswith("/_control/"):
            status, payload, extra = self._control(method, path, body)
            return status, json.dumps(payload).encode(), extra
        parts = [p for p in path.split("/") if p]
        route = parts[2] if len(parts) >= 3 and parts[0] == "v2" else "unknown"
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        authorized = hmac.compare_digest(token.encode(), self.api_key.encode())
        status, payload, extra = self._api(method, parts, route, authorized, body)
        data = json.dumps(payload).encode()
        with self.state.lock:
            self.state.requests.append(Recorded(method, path, route, status, authorized))
            garble = next((g for g in self.state.garbles if route in g), None)
            if garble is not None and authorized:
                self.state.garbles.remove(garble)
            else:
                garble = None
        if garble is not None:
            data = _garbled_gzip(data)
            extra = {**extra, "Content-Encoding": "gzip"}
        return status, data, extra

    def _api(
        self, method: str, parts: list[str], route: str, authorized: bool, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not authorized:
            return 401, {"error": "Unauthorized"}, {}
        if len(parts) < 3 or parts[0] != "v2" or parts[1] != self.endpoint_id:
            return 404, {"error": "endpoint not found"}, {}
        with self.state.lock:
            if self.state.outage:
                return 503, {"error": "service unavailable"}, {}
            failure = next((f for f in self.state.failures if route in f.routes), None)
            if failure is not None:
                self.state.failures.remove(failure)
                extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                return failure.status, {"error": f"scripted HTTP {failure.status}"}, extra
            if route == "run" and method == "POST" and len(parts) == 3:
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    return 400, {"error": "body is not JSON"}, {}
                if not isinstance(request, dict) or not isinstance(request.get("input"), dict):
                    return 400, {"error": 'body must be {"input": {...}}'}, {}
                job = Job(
                    id=f"{uuid.uuid4()}-u1",
                    input=request["input"],
                    created=time.monotonic(),
                    behaviour=self.state.behaviour,
                )
                self.state.jobs[job.id] = job
                return 200, {"id": job.id, "status": "IN_QUEUE"}, {}
            if route in ("status", "cancel") and len(parts) == 4:
                job = self.state.jobs.get(parts[3])
                if job is None:
                    return 404, {"error": "job not found"}, {}
                if route == "cancel" and method == "POST":
                    job.cancelled = True
                    return 200, {"id": job.id, "status": "CANCELLED"}, {}
                if route == "status" and method == "GET":
                    return 200, self._job_view(job), {}
            if route == "health" and method == "GET":
                views = [self._job_view(j)["status"] for j in self.state.jobs.values()]
                return (
                    200,
                    {
                        "jobs": {
                            "completed": views.count("COMPLETED"),
                            "failed": views.count("FAILED"),
                            "inProgress": views.count("IN_PROGRESS"),
                            "inQueue": views.count("IN_QUEUE"),
                            "retried": 0,
                        },
                        "workers": {"idle": 1, "running": views.count("IN_PROGRESS")},
                    },
                    {},
                )
        return 404, {"error": "no such route"}, {}

    def _control(
        self, method: str, path: str, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            data = json.loads(body or b"{}") if method == "POST" else {}
            if path == "/_control/behaviour" and method == "POST":
                self.set_behaviour(**data)
            elif path == "/_control/fail" and method == "POST":
                self.fail_next(
                    int(data["status"]),
                    int(data.get("count", 1)),
                    retry_after=data.get("retry_after"),
                    routes=tuple(data.get("routes", ("run", "status", "cancel"))),
                )
            elif path == "/_control/garble" and method == "POST":
                self.garble_next(
                    int(data.get("count", 1)),
                    routes=tuple(data.get("routes", ("run", "status", "cancel"))),
                )
            elif path == "/_control/outage" and method == "POST":
                self.set_outage(bool(data.get("on", True)))
            elif path == "/_control/reset" and method == "POST":
                self.reset()
            elif path == "/_control/requests" and method == "GET":
                return 200, {"requests": [asdict(r) for r in self.requests()]}, {}
            else:
                return 404, {"error": "no such control"}, {}
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {"error": str(exc)}, {}
        return 200, {"behaviour": asdict(self.state.behaviour)}, {}


def _garbled_gzip(data: bytes) -> bytes:
    """``data`` gzip-compressed, its header intact and every byte after it flipped."""
    packed = gzip.compress(data, mtime=0)
    return packed[:10] + bytes(byte ^ 0x5A for byte in packed[10:])


def _handler_for(fake: FakeRunPod) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeRunPod/1.0"
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, data, extra = fake.handle(self.command, self.path, headers, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake of RunPod's serverless API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--api-key", default=TEST_API_KEY)
    parser.add_argument("--endpoint-id", default=TEST_ENDPOINT_ID)
    parser.add_argument("--mode", choices=MODES, default="success")
    parser.add_argument("--queue-seconds", type=float, default=0.0)
    parser.add_argument("--run-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeRunPod(
        host=args.host, port=args.port, api_key=args.api_key, endpoint_id=args.endpoint_id
    )
    fake.set_behaviour(
        mode=args.mode, queue_seconds=args.queue_seconds, run_seconds=args.run_seconds
    )
    print(f"fake RunPod listening on {fake.url} (endpoint {fake.endpoint_id})", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
