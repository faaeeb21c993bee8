"""Benchmark: requests per second and latency of the endpoints hit most, under load.

Starts the service in Gunicorn with Uvicorn workers, as ``morpheus.gunicorn_conf``
configures it (its own database on the machine's PostgreSQL, a private queue on Redis,
an API key, two queued comics), then drives ``--connections`` concurrent keepalive
connections with wrk at each endpoint in turn for ``--seconds``, ``--rounds`` times, and
prints the medians of req/s, p50 and p95, and the answers that were not 2xx:

- ``/health/live``: the process answers (the image's health check);
- ``/health``: the summary (probes, load balancers, the smoke test);
- ``/health/ready``: PostgreSQL and Redis answer (a deploy's gate);
- ``GET /v1/comics/{id}``: an API client polling its comic (API key, its rate limit);
- ``GET /comics/{id}``: a reader's status page on the storefront (per-address limit).

The rate limits stay on, each high enough never to refuse, so that every request still
pays its Redis round trip. The log level is the production default (INFO: one JSON
access line a request), written to a file.

With ``--baseline REV`` the app of git revision REV (its ``app/src``, taken with
``git archive``) is served too, beside this checkout's, and each endpoint is measured on
both, one after the other (in turns, each round the other first), so that the figures
compare within one run. With ``--profile DIR`` py-spy samples this checkout's workers
during each endpoint's first run (collapsed stacks in DIR, only while a worker holds
the GIL: the CPU a request costs) and the frames that take most of it are printed.

    cd app && ../.venv/bin/python benchmarks/hot_endpoints.py [--connections 100]
        [--seconds 5] [--rounds 3] [--workers 2] [--baseline main] [--profile /tmp/prof]
        [--only /health --only '/v1/comics/{id}' ...]

Needs wrk (``make setup`` installs it) and, for ``--profile``, py-spy (``pip install
py-spy``; ``--py-spy PATH`` names the program). Environment: MORPHEUS_TEST_PG_ADMIN_URL
(default postgresql://postgres@127.0.0.1:5432/postgres, a role that may create
databases) and MORPHEUS_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), as for the
tests. Only addresses on this machine are used.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

APP = Path(__file__).resolve().parents[1]
SOURCE = APP / "src"
# This checkout's code, whatever the virtualenv has installed.
sys.path.insert(0, str(SOURCE))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis  # noqa: E402
from morpheus.db import api_keys, comics, schema  # noqa: E402
from morpheus.db.session import make_engine, make_sessionmaker  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

API_HOST = "api.morpheus.localhost"
STOREFRONT_HOST = "morpheus.localhost"
# High enough never to refuse a benchmark's requests, so that every one is counted.
RATE_LIMIT_PER_MINUTE = 100_000_000

# wrk's report: one parsable line per run (latencies in microseconds).
WRK_REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.2f p95_ms=%.2f requests=%d status=%d errors=%d\\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    summary.requests, summary.errors.status, errors))
end
"""
RESULT_RE = re.compile(r"^RESULT (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Endpoint:
    label: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Figures:
    rps: float
    p50_ms: float
    p95_ms: float
    requests: int
    not_2xx: int
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _database() -> Iterator[str]:
    """A new, migrated database (SQLAlchemy URL), dropped afterwards."""
    admin = os.environ.get(
        "MORPHEUS_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"morpheus_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    database_url = url.render_as_string(hide_password=False)
    try:
        schema.upgrade(database_url, "head")
        yield database_url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _fixtures(database_url: str) -> tuple[str, str, str]:
    """An API key (plaintext), a comic it submitted and a comic from the storefront."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    text = "It was a dark and stormy night. The rain fell in torrents. " * 20
    try:
        with make_sessionmaker(engine)() as session:
            created = api_keys.create_api_key(session, "benchmark")
            api_comic = comics.create_comic(
                session, title="Polled", source_text=text, api_key_id=created.api_key.id
            )
            shop_comic = comics.create_comic(session, title="Read", source_text=text)
            return created.key, str(api_comic.id), str(shop_comic.id)
    finally:
        engine.dispose()


def _baseline_source(revision: str, into: Path) -> Path:
    """``app/src`` of ``revision`` (git archive) under ``into``."""
    root = subprocess.run(  # noqa: S603 - a fixed command, no shell
        ["git", "-C", str(APP), "rev-parse", "--show-toplevel"],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(  # noqa: S603 - a fixed command, no shell
        ["git", "-C", root, "archive", "--format=tar", revision, "app/src"],  # noqa: S607 - git from PATH
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {revision}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "app" / "src"


@contextmanager
def _server(
    source: Path, env: dict[str, str], workers: int, log_path: Path
) -> Iterator[tuple[str, int]]:
    """Gunicorn serving the app found in ``source``: (base URL, master PID)."""
    port = _free_port()
    env = {
        **env,
        "PYTHONPATH": str(source),
        "MORPHEUS_BIND": f"127.0.0.1:{port}",
        "MORPHEUS_WEB_CONCURRENCY": str(workers),
        # Each server its own metrics files (the conf makes a private directory).
        "PROMETHEUS_MULTIPROC_DIR": str(log_path.with_suffix(".metrics")),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:morpheus.gunicorn_conf"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wrk(base: str, endpoint: Endpoint, connections: int, seconds: float, report: Path) -> Figures:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
    command += ["-s", str(report)]
    for name, value in endpoint.headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(  # noqa: S603 - wrk and its options, no shell
        [*command, base + endpoint.path], capture_output=True, text=True, check=False
    )
    match = RESULT_RE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    fields = dict(item.split("=", 1) for item in match.group(1).split())
    return Figures(
        rps=float(fields["rps"]),
        p50_ms=float(fields["p50_ms"]),
        p95_ms=float(fields["p95_ms"]),
        requests=int(fields["requests"]),
        not_2xx=int(fields["status"]),
        errors=int(fields["errors"]),
    )


def _median(results: list[Figures]) -> Figures:
    """Each figure's median over the rounds; the failures added up."""
    return Figures(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p95_ms=statistics.median(r.p95_ms for r in results),
        requests=sum(r.requests for r in results),
        not_2xx=sum(r.not_2xx for r in results),
        errors=sum(r.errors for r in results),
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _start_profiles(py_spy: str, pid: int, seconds: float, out: Path) -> list[subprocess.Popen]:
    """py-spy recording each worker of the server ``pid`` (collapsed stacks, ``out``-N)."""
    recorders = []
    for number, worker in enumerate(sorted(_children(pid))):
        # --gil: only what holds the interpreter, the CPU a request costs (not its waits).
        command = [py_spy, "record", "--pid", str(worker), "--format", "raw", "--gil"]
        command += ["--duration", str(max(1, int(seconds))), "--output", f"{out}-{number}.txt"]
        recorders.append(
            subprocess.Popen(  # noqa: S603 - py-spy and its options, no shell
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    time.sleep(0.5)  # attached before the load starts
    return recorders


def _frame_name(frame: str) -> str:
    """``render (starlette/responses.py:51)`` -> ``starlette/responses.py:render``."""
    match = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if match is None:
        return frame
    function, path = match.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{function}"


def _top_frames(
    paths: list[Path], count: int
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Total samples, the ``count`` frames that were innermost most often (where the CPU
    went) and the ``count`` frames of ours with the most samples under them."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if not stack or not samples.isdigit():
                continue
            frames = [_frame_name(frame) for frame in stack.split(";")]
            total += int(samples)
            for frame in set(frames):
                inclusive[frame] += int(samples)
            own[frames[-1]] += int(samples)
    ours = [(frame, n) for frame, n in inclusive.most_common() if frame.startswith("morpheus/")]
    return total, own.most_common(count), ours[:count]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0, help="per run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per endpoint and tree (the median counts)"
    )
    parser.add_argument("--workers", type=int, default=2, help="Gunicorn workers")
    parser.add_argument("--baseline", metavar="REV", help="also serve the app of this revision")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy's stacks go here")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy program")
    parser.add_argument("--only", action="append", metavar="PATH", help="endpoint paths")
    args = parser.parse_args(argv)
    for program in ["wrk"] + ([args.py_spy] if args.profile else []):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is not installed")

    redis_url = os.environ.get("MORPHEUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    queue = f"bench-comics-{uuid.uuid4().hex[:12]}"
    with ExitStack() as stack:
        database_url = stack.enter_context(_database())
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (root / "storage").mkdir()
        (root / "secrets").mkdir()
        report = root / "report.lua"
        report.write_text(WRK_REPORT)
        key, api_comic, shop_comic = _fixtures(database_url)
        endpoints = [
            Endpoint("GET /health/live", "/health/live", {}),
            Endpoint("GET /health", "/health", {}),
            Endpoint("GET /health/ready", "/health/ready", {}),
            Endpoint(
                "GET /v1/comics/{id} (API key)",
                f"/v1/comics/{api_comic}",
                {"Host": API_HOST, "Authorization": f"Bearer {key}"},
            ),
            Endpoint(
                "GET /comics/{id} (storefront)",
                f"/comics/{shop_comic}",
                {"Host": STOREFRONT_HOST},
            ),
        ]
        if args.only:
            endpoints = [e for e in endpoints if e.label.split()[1] in args.only]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MORPHEUS_")},
            "MORPHEUS_ENVIRONMENT": "test",
            "MORPHEUS_DATABASE_URL": database_url,
            "MORPHEUS_REDIS_URL": redis_url,
            "MORPHEUS_QUEUE_NAME": queue,
            "MORPHEUS_STORAGE_PATH": str(root / "storage"),
            "MORPHEUS_SECRETS_DIR": str(root / "secrets"),
            "MORPHEUS_SECRET_KEY": secrets.token_urlsafe(32),
            "MORPHEUS_RATE_LIMIT_REQUESTS_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
            "MORPHEUS_LOG_LEVEL": "INFO",
        }
        trees: list[tuple[str, Path]] = []
        if args.baseline:
            baseline = _baseline_source(args.baseline, root / "baseline")
            trees.append((args.baseline, baseline))
        trees.append(("this tree", SOURCE))
        servers = {
            name: stack.enter_context(
                _server(source, env, args.workers, root / f"server-{number}.log")
            )
            for number, (name, source) in enumerate(trees)
        }

        print(
            f"wrk -t1 -c{args.connections} -d{args.seconds:g}s, median of {args.rounds} rounds; "
            "Gunicorn with "
            f"{args.workers} Uvicorn workers; {os.cpu_count()} cores; "
            f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        )
        header = f"{'endpoint':<32} {'tree':<12} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8}"
        print(f"{header} {'non-2xx':>8} {'errors':>7} {'x':>6}")
        profiles: dict[str, list[Path]] = {}
        try:
            for endpoint in endpoints:
                runs: dict[str, list[Figures]] = {name: [] for name in servers}
                for number in range(args.rounds):
                    # Each round takes the trees in the other order: neither is always first.
                    order = list(servers) if number % 2 == 0 else list(reversed(servers))
                    for name in order:
                        base, pid = servers[name]
                        # Warm the workers' pools and caches, then measure.
                        _wrk(base, endpoint, min(args.connections, 8), 1, report)
                        recorders: list[subprocess.Popen[bytes]] = []
                        if args.profile and name == "this tree" and number == 0:
                            args.profile.mkdir(parents=True, exist_ok=True)
                            slug = re.sub(r"[^a-z0-9]+", "-", endpoint.label.lower()).strip("-")
                            out = args.profile / slug
                            recorders = _start_profiles(args.py_spy, pid, args.seconds, out)
                            profiles[endpoint.label] = [
                                Path(f"{out}-{n}.txt") for n in range(len(recorders))
                            ]
                        result = _wrk(base, endpoint, args.connections, args.seconds, report)
                        runs[name].append(result)
                        for recorder in recorders:
                            recorder.wait(timeout=args.seconds + 30)
                medians = {name: _median(results) for name, results in runs.items()}
                first = next(iter(medians.values()))
                for name, result in medians.items():
                    ratio = f"{result.rps / first.rps:.2f}" if result is not first else ""
                    print(
                        f"{endpoint.label:<32} {name:<12} {result.rps:>9.0f} "
                        f"{result.p50_ms:>8.1f} {result.p95_ms:>8.1f} {result.not_2xx:>8} "
                        f"{result.errors:>7} {ratio:>6}"
                    )
                sys.stdout.flush()
            if len(servers) > 1:
                print(f"(x: req/s as a multiple of {trees[0][0]}'s)")
        finally:
            client = redis.Redis.from_url(redis_url)
            try:
                for pattern in (f"bull:{queue}:*", f"morpheus:{queue}:*"):
                    keys = list(client.scan_iter(match=pattern))
                    if keys:
                        client.delete(*keys)
            finally:
                client.close()

        for label, paths in profiles.items():
            total, innermost, ours = _top_frames(paths, 15)
            print(f"\n{label}: {total} samples holding the GIL (py-spy, this tree's workers)")
            for title, rows in (("innermost", innermost), ("ours, inclusive", ours)):
                print(f"  {title}:")
                for frame, samples in rows:
                    print(f"    {samples / max(1, total):>6.1%}  {frame}")
        if profiles:
            print(f"\n(collapsed stacks: {args.profile})")


if __name__ == "__main__":
    main()
