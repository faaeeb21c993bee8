"""Fault drills on the converged platform, run the way an operator would break it: Redis
restarted, killed and emptied under queued and running comics, PostgreSQL restarted
under steady traffic, and hostile uploads against the web tier. Each drill puts back
what it broke; test_80_check_mode then proves that nothing drifted.

Each drill prints its figures (recovery times, responses seen) with -v -s, and the
assertions say what was seen when they fail.
"""

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT
from site_checks import (
    API_NAME,
    AUTH_FILE,
    BACKEND,
    ROOT_CA,
    WORKER,
    assert_each_completed_once,
    backend_url,
    docker_inspect,
    drill_key,
    submit,
    unfinished,
    wait_until_finished,
)

pytestmark = pytest.mark.drill

FILES = Path(__file__).resolve().parent.parent / "files"
REDIS_ADMIN = ("admin", "local-only-redis-admin")  # test-only value (inventories/local)


@pytest.fixture()
def api_key(host):
    with drill_key(host) as name:
        yield name


# The drills' figures, kept beside the run's test reports (and printed with -s).
FIGURES = PROJECT / ".cache" / "reports" / "drills.txt"


def say(message: str) -> None:
    print(f"drill: {message}", file=sys.stderr)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(f"{time.strftime('%H:%M:%S')} platform: {message}\n")


def redis_admin(host, *args: str):
    name, password = REDIS_ADMIN
    return host.run(f"REDISCLI_AUTH={password} redis-cli --user {name} {' '.join(args)}")


def wait_for_redis(host) -> None:
    probe = host.run(
        "for i in $(seq 1 200); do redis-cli PING 2>/dev/null | grep -q NOAUTH && exit 0; "
        "sleep 0.1; done; exit 1"
    )
    assert probe.rc == 0, host.run("journalctl -u redis-server -n 30 --no-pager").stdout


def kill_redis(host) -> None:
    pid = host.run("systemctl show -p MainPID --value redis-server").stdout.strip()
    assert host.run(f"kill -9 {pid}").rc == 0
    # systemd starts it again, which replays the append-only file.
    host.run(
        "for i in $(seq 1 100); do "
        f'now=$(systemctl show -p MainPID --value redis-server); [ "$now" != "{pid}" ] '
        '&& [ "$now" != 0 ] && break; sleep 0.1; done'
    )


BREAKS = {
    "restart": lambda host: host.run("systemctl restart redis-server"),
    "kill -9": kill_redis,
    "flushall": lambda host: redis_admin(host, "FLUSHALL"),
}


@pytest.mark.parametrize("how", list(BREAKS))
def test_queued_and_running_comics_survive_redis(host, api_key, how):
    """Comics queued and running when Redis restarts, is killed, or loses every key all
    complete, each exactly once. The append-only file keeps the jobs through a restart
    or a kill; after a FLUSHALL the reconciler queues again what PostgreSQL says must
    run (every 10 s locally, for comics unchanged for 15 s)."""
    ids = submit(host)
    time.sleep(1)
    before = unfinished(host, ids)
    assert set(before) - {"completed"}, f"every comic finished before Redis broke: {before}"
    broken_at = time.monotonic()
    BREAKS[how](host)
    wait_for_redis(host)
    wait_until_finished(host, ids)
    recovered = time.monotonic() - broken_at
    say(f"redis {how}: {len(ids)} comics {before} before; all finished {recovered:.1f}s after")
    assert_each_completed_once(host, ids)
    assert docker_inspect(host, WORKER)["State"]["Running"]


def test_postgresql_restart_under_steady_traffic(host, api_key):
    """While PostgreSQL restarts, API reads through the edge fail only while it is really
    down, plus at most 2 s, and every failure is a JSON 503 with Retry-After."""
    comic = submit(host, 1)[0]
    drill = host.run(
        f"DRILL_URL=https://{API_NAME}/v1/comics/{comic} DRILL_HOST_NAME={API_NAME} "
        f"DRILL_CA={ROOT_CA} DRILL_AUTH_FILE={AUTH_FILE} python3 - <<'EOF'\n"
        f"{(FILES / 'steady_traffic.py').read_text()}\nEOF"
    )
    assert drill.rc == 0, drill.stderr
    seen = json.loads(drill.stdout)
    down, up = seen["down_at"], seen["up_at"]
    assert down and up, f"PostgreSQL was never seen down and back: {seen}"
    responses = seen["responses"]
    failures = [r for r in responses if not 200 <= r["status"] < 300]
    after = [r for r in responses if r["t"] > up + 2]
    slowest = max(r["seconds"] for r in responses)
    say(
        f"postgresql restart: down {up - down:.1f}s; {len(responses)} requests, "
        f"{len(failures)} not 2xx, statuses {sorted({r['status'] for r in responses})}, "
        f"slowest {slowest:.1f}s"
    )
    assert len(responses) > 20, f"requests were held up: {responses}"
    for failure in failures:
        # A request that started before the database went down may fail once it is.
        assert down - 20 <= failure["t"] <= up + 2, f"failed outside the outage: {failure}"
        assert failure["status"] == 503, failure
        assert failure["type"].startswith("application/json"), failure
        assert failure.get("retry_after"), failure
    # Within 2 s of PostgreSQL answering again, the service answers as before.
    assert after, "no request after PostgreSQL was back"
    for late in after:
        assert 200 <= late["status"] < 300 and late["seconds"] < 2, late


def _bomb_upload(url: str, path: str, title: str) -> str:
    return (
        f"curl -sS -m 120 -o /dev/null -w '%{{http_code}}\\n' -H 'Host: {API_NAME}' "
        f"-H @{AUTH_FILE} -F 'title={title}' -F 'file=@{path};type=application/epub+zip' "
        f"{url}/v1/comics"
    )


def test_hostile_uploads_do_not_take_the_web_tier_down(host, api_key):
    """Hostile EPUBs of a few hundred KiB (a markup bomb, a deflate bomb, and one whose
    ZIP directory lies about its sizes, so that only decompressing finds it out) are
    refused while the sites keep answering, and no backend worker is killed."""
    # The service's own bomb maker, run on the instance: the bombs unpack to hundreds
    # of MiB but are made in chunks, and only their few hundred KiB cross over.
    maker = (PROJECT / "app" / "tests" / "fixtures" / "hostile_epub.py").read_text()
    made = host.run(
        f"python3 - <<'EOF'\n{maker}\n"
        "open('/root/markup-bomb.epub', 'wb').write(markup_bomb(96 * MiB))\n"
        "open('/root/deflate-bomb.epub', 'wb').write(deflate_bomb(512 * MiB))\n"
        "open('/root/lying-bomb.epub', 'wb').write(lying_epub(256 * MiB))\n"
        "EOF"
    )
    assert made.rc == 0, made.stderr
    restarts = docker_inspect(host, BACKEND)["RestartCount"]
    url = backend_url(host)
    health = (
        f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}\\n' --cacert {ROOT_CA} "
        f"--resolve {API_NAME}:443:127.0.0.1 https://{API_NAME}/health/live"
    )
    drill = host.run(
        f"( {_bomb_upload(url, '/root/markup-bomb.epub', 'Markup')} > /root/bomb-1 & "
        f"{_bomb_upload(url, '/root/deflate-bomb.epub', 'Deflate')} > /root/bomb-2 & "
        f"{_bomb_upload(url, '/root/lying-bomb.epub', 'Lying')} > /root/bomb-3 & "
        "wait ) & uploads=$!; "
        f"while kill -0 $uploads 2>/dev/null; do {health}; sleep 0.1; done; "
        "echo bombs $(cat /root/bomb-1 /root/bomb-2 /root/bomb-3)"
    )
    assert drill.rc == 0, drill.stderr
    lines = drill.stdout.split("\n")
    answers = [line for line in lines if line and not line.startswith("bombs")]
    bomb_codes = lines[-2].split()[1:] if lines[-1] == "" else lines[-1].split()[1:]
    say(f"hostile uploads: bombs answered {bomb_codes}; health meanwhile {answers}")
    assert sorted(bomb_codes) and all(code in {"413", "422"} for code in bomb_codes), drill.stdout
    assert answers and set(answers) == {"200"}, drill.stdout
    state = docker_inspect(host, BACKEND)
    assert state["RestartCount"] == restarts
    assert not state["State"]["OOMKilled"]
    host.run("rm -f /root/*-bomb.epub /root/bomb-[123]")
