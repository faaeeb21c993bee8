"""The harness's package cache against a local stand-in for the Debian mirror: packages
are fetched once and then served from disk, indexes always come from the mirror, other
hosts are refused and a cut download is never kept."""

import http.client
import http.server
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_harness import load

apt_cache = load("apt-cache")

DEB = b"!<arch>\n" + bytes(range(256)) * 64


class Mirror(http.server.ThreadingHTTPServer):
    """Answers every path with DEB, counting requests per path; /cut/ paths promise
    more bytes than they send."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        super().__init__(("127.0.0.1", 0), MirrorHandler)


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    server: Mirror

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests[self.path] = self.server.requests.get(self.path, 0) + 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(DEB) * (2 if "/cut/" in self.path else 1)))
        self.end_headers()
        self.wfile.write(DEB)


def serve(server: http.server.HTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def mirror():
    server = Mirror()
    serve(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path: Path, mirror: Mirror):
    server = apt_cache.CacheServer(("127.0.0.1", 0), tmp_path / "cache", {"127.0.0.1"})
    serve(server)
    yield server
    server.shutdown()
    server.server_close()


def fetch(cache, url: str) -> bytes:
    proxy = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{cache.server_port}"})
    with urllib.request.build_opener(proxy).open(url, timeout=10) as answer:
        return answer.read()


def test_a_package_is_fetched_once_then_served_from_disk(cache, mirror):
    url = f"http://127.0.0.1:{mirror.server_port}/debian/pool/main/h/hello/hello_1_amd64.deb"
    assert fetch(cache, url) == DEB
    assert fetch(cache, url) == DEB
    assert mirror.requests == {"/debian/pool/main/h/hello/hello_1_amd64.deb": 1}
    kept = cache.cache_dir / "127.0.0.1" / "debian/pool/main/h/hello/hello_1_amd64.deb"
    assert kept.read_bytes() == DEB
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_index_files_always_come_from_the_mirror(cache, mirror):
    url = f"http://127.0.0.1:{mirror.server_port}/debian/dists/bookworm/InRelease"
    fetch(cache, url)
    fetch(cache, url)
    assert mirror.requests["/debian/dists/bookworm/InRelease"] == 2
    assert not (cache.cache_dir / "127.0.0.1").exists()


def test_indexes_fetched_by_hash_are_kept(cache, mirror):
    path = "/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/abc123"
    fetch(cache, f"http://127.0.0.1:{mirror.server_port}{path}")
    fetch(cache, f"http://127.0.0.1:{mirror.server_port}{path}")
    assert mirror.requests[path] == 1


def test_another_host_is_refused(cache):
    with pytest.raises(urllib.error.HTTPError) as refused:
        fetch(cache, "http://example.org/debian/pool/x.deb")
    assert refused.value.code == 403
    assert "only the Debian archive" in refused.value.read().decode()


def test_a_cut_download_is_not_kept(cache, mirror):
    url = f"http://127.0.0.1:{mirror.server_port}/debian/pool/cut/x_1_amd64.deb"
    with pytest.raises((OSError, http.client.HTTPException)):
        fetch(cache, url)
    folder = cache.cache_dir / "127.0.0.1" / "debian/pool/cut"
    assert not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/debian/pool/main/r/redis/redis_7.deb", "h/debian/pool/main/r/redis/redis_7.deb"),
        (
            "/debian/dists/bookworm/main/by-hash/SHA256/ab",
            "h/debian/dists/bookworm/main/by-hash/SHA256/ab",
        ),
        ("/debian/dists/bookworm/InRelease", None),
        ("/debian/pool/../../etc/passwd", None),
    ],
)
def test_cache_path(tmp_path, path, expected):
    found = apt_cache.cache_path(tmp_path, "h", path)
    assert found == (tmp_path / expected if expected else None)


def test_archive_hosts_read_apt_sources_without_their_comments(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.example.org/archive\nURIs: http://mirror.example.org/debian\n"
    )
    assert apt_cache.archive_hosts(tmp_path) == {
        "deb.debian.org",
        "security.debian.org",
        "mirror.example.org",
    }
