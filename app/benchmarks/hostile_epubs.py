"""Benchmark: /health/live latency while two clients keep posting hostile EPUBs.

Starts the service in Gunicorn (its own database on the machine's PostgreSQL, a private
queue on Redis, an API key), then for each scenario sends /health/live requests one after
another for ``--seconds`` while two threads post a markup bomb (a 95 MiB XHTML chapter
packed into a few hundred KiB) over and over, and prints the p50, p95 and largest health
latency, the bombs' answers, and the peak RSS of the web workers:

- ``quiet``: no bombs, the baseline;
- ``default-limits``: the settings' defaults, which refuse the bomb from the ZIP's
  directory (413, ``epub_max_unpacked_bytes``);
- ``time-limit``: size limits lifted, so that each bomb is read until
  ``--ingest-timeout`` kills its reader (422, ``ingest_timeout_seconds``): the most work
  a submission can cost.

    cd app && ../.venv/bin/python benchmarks/hostile_epubs.py [--seconds 10] [--workers 2]
        [--ingest-timeout 5] [--only SCENARIO ...]

Environment: MORPHEUS_TEST_PG_ADMIN_URL (default postgresql://postgres@127.0.0.1:5432/
postgres, a role that may create databases) and MORPHEUS_TEST_REDIS_URL (default
redis://127.0.0.1:6379/0), as for the tests. Only addresses on this machine are used.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
import redis
from morpheus.db import api_keys, schema
from morpheus.db.session import make_engine, make_sessionmaker
from psycopg import sql
from sqlalchemy.engine import make_url

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hostile_epub.py"
API_HOST = "api.morpheus.localhost"
MiB = 1024 * 1024


def _hostile_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("morpheus_bench_hostile_epub", FIXTURE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the hostile EPUB builder at {FIXTURE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def _api_key(database_url: str) -> str:
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with make_sessionmaker(engine)() as session:
            return api_keys.create_api_key(session, "benchmark").key
    finally:
        engine.dispose()


@contextmanager
def _server(env: dict[str, str], workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {**env, "MORPHEUS_BIND": f"127.0.0.1:{port}", "MORPHEUS_WEB_CONCURRENCY": str(workers)}
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


def _peak_rss_mib(pid: int) -> float:
    """The largest peak RSS (VmHWM) among the server's worker processes."""
    peaks = [0.0]
    for child in _children(pid):
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _run(
    base: str, pid: int, headers: dict[str, str], bomb: bytes | None, seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    answers: collections.Counter[str] = collections.Counter()
    refusal_times: list[float] = []
    lock = threading.Lock()

    def post_bombs() -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = client.post(
                        "/v1/comics",
                        files={"file": ("bomb.epub", bomb or b"", "application/epub+zip")},
                        data={"title": "Bomb"},
                        headers=headers,
                    )
                    limit = response.json().get("limit") if response.content else None
                    answer = f"{response.status_code} {limit}"
                except httpx.HTTPError as exc:
                    answer = type(exc).__name__
                with lock:
                    answers[answer] += 1
                    refusal_times.append(time.perf_counter() - started)

    threads = [threading.Thread(target=post_bombs) for _ in range(2 if bomb else 0)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    failures = 0
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                ok = client.get("/health/live").status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            failures += not ok
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    return {
        "latencies": latencies,
        "failures": failures,
        "answers": answers,
        "refusal_times": refusal_times,
        "peak_rss": _peak_rss_mib(pid),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per scenario")
    parser.add_argument("--workers", type=int, default=2, help="Gunicorn workers")
    parser.add_argument("--ingest-timeout", type=float, default=5.0)
    parser.add_argument(
        "--only", action="append", choices=["quiet", "default-limits", "time-limit"]
    )
    args = parser.parse_args(argv)

    bomb = _hostile_module().markup_bomb(95 * MiB)
    redis_url = os.environ.get("MORPHEUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    queue = f"bench-comics-{uuid.uuid4().hex[:12]}"
    print(f"bomb: {len(bomb) / 1024:.0f} KiB packed, 95 MiB of XHTML unpacked")
    print(f"machine: {os.cpu_count()} cores; Gunicorn workers: {args.workers}")
    with _database() as database_url, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "storage").mkdir()
        (root / "secrets").mkdir()
        headers = {"Host": API_HOST, "Authorization": f"Bearer {_api_key(database_url)}"}
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MORPHEUS_")},
            "MORPHEUS_ENVIRONMENT": "test",
            "MORPHEUS_DATABASE_URL": database_url,
            "MORPHEUS_REDIS_URL": redis_url,
            "MORPHEUS_QUEUE_NAME": queue,
            "MORPHEUS_STORAGE_PATH": str(root / "storage"),
            "MORPHEUS_SECRETS_DIR": str(root / "secrets"),
            "MORPHEUS_SECRET_KEY": secrets.token_urlsafe(32),
            "MORPHEUS_RATE_LIMIT_ENABLED": "false",
            "MORPHEUS_LOG_LEVEL": "WARNING",
        }
        lifted = {
            "MORPHEUS_EPUB_MAX_UNPACKED_BYTES": str(1 << 40),
            "MORPHEUS_EPUB_MAX_MEMBER_BYTES": str(1 << 40),
            "MORPHEUS_EPUB_MAX_COMPRESSION_RATIO": "1e9",
            "MORPHEUS_MAX_TEXT_CHARS": str(1 << 40),
            "MORPHEUS_INGEST_TIMEOUT_SECONDS": str(args.ingest_timeout),
        }
        scenarios = [
            ("quiet", env, None),
            ("default-limits", env, bomb),
            ("time-limit", {**env, **lifted}, bomb),
        ]
        try:
            for name, scenario_env, payload in scenarios:
                if args.only and name not in args.only:
                    continue
                log_path = root / f"{name}.log"
                with _server(scenario_env, args.workers, log_path) as (base, pid):
                    result = _run(base, pid, headers, payload, args.seconds)
                latencies = [s * 1000 for s in result["latencies"]]
                print(f"\n{name}:")
                print(
                    f"  /health/live: {len(latencies)} requests, {result['failures']} failed; "
                    f"p50 {statistics.median(latencies):.1f} ms, "
                    f"p95 {_percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms"
                )
                if payload is not None:
                    answers = ", ".join(f"{k} x{v}" for k, v in result["answers"].most_common())
                    times = result["refusal_times"]
                    print(
                        f"  bombs: {len(times)} posted ({answers}); "
                        f"answered in {statistics.median(times):.2f} s median, "
                        f"{max(times):.2f} s max"
                    )
                print(f"  peak RSS of a web worker: {result['peak_rss']:.0f} MiB")
                sys.stdout.flush()
        finally:
            client = redis.Redis.from_url(redis_url)
            try:
                for pattern in (f"bull:{queue}:*", f"morpheus:{queue}:*"):
                    keys = list(client.scan_iter(match=pattern))
                    if keys:
                        client.delete(*keys)
            finally:
                client.close()


if __name__ == "__main__":
    main()
