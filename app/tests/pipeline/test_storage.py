"""Storage: the same behaviour on the local filesystem and on an S3-compatible server
(moto in server mode, over real HTTP); atomic local writes; keys cannot escape."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from morpheus.settings import Settings
from morpheus.storage import (
    InvalidKey,
    KeyNotFound,
    LocalStorage,
    S3Storage,
    Storage,
    cbz_key,
    get_storage,
    page_key,
    panel_key,
    pdf_key,
    validate_key,
)
from moto.server import ThreadedMotoServer
from prometheus_client import REGISTRY

TEST_S3_KEY_ID = "test-only-access-key"
TEST_S3_SECRET = "test-only-secret"  # moto accepts any credentials


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_storage(endpoint: str, bucket: str, **kwargs: Any) -> S3Storage:
    storage = S3Storage.connect(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id=TEST_S3_KEY_ID,
        secret_access_key=TEST_S3_SECRET,
        region="us-east-1",
        **kwargs,
    )
    storage.ensure_bucket()
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    endpoint = request.getfixturevalue("moto_url")
    return s3_storage(endpoint, f"test-{uuid.uuid4().hex[:12]}")


def test_keys_of_a_comic() -> None:
    assert panel_key("abc", 7) == "comics/abc/panels/00007.png"
    assert page_key("abc", 12) == "comics/abc/pages/0012.png"
    assert pdf_key("abc") == "comics/abc/comic.pdf"
    assert cbz_key("abc") == "comics/abc/comic.cbz"


def test_put_get_exists_overwrite(storage: Storage) -> None:
    key = panel_key(uuid.uuid4(), 1)
    assert not storage.exists(key)
    storage.put(key, b"first", "image/png")
    assert storage.exists(key)
    assert storage.get(key) == b"first"
    storage.put(key, b"second", "image/png")
    assert storage.get(key) == b"second"


def test_get_missing_key_raises_key_not_found(storage: Storage) -> None:
    with pytest.raises(KeyNotFound):
        storage.get("comics/nothing/comic.pdf")


def test_delete_prefix_removes_one_comic_only(storage: Storage) -> None:
    one, two = uuid.uuid4(), uuid.uuid4()
    for n in range(1, 4):
        storage.put(panel_key(one, n), b"x", "image/png")
    storage.put(pdf_key(one), b"%PDF", "application/pdf")
    storage.put(panel_key(two, 1), b"y", "image/png")
    assert storage.list_keys(f"comics/{one}/") == sorted(
        [panel_key(one, n) for n in range(1, 4)] + [pdf_key(one)]
    )
    assert storage.delete_prefix(f"comics/{one}/") == 4
    assert storage.list_keys(f"comics/{one}/") == []
    assert storage.get(panel_key(two, 1)) == b"y"
    assert storage.delete_prefix(f"comics/{one}/") == 0


BAD_KEYS = [
    pytest.param("../etc/passwd", id="parent"),
    pytest.param("comics/../../x", id="parent-inside"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("comics//x", id="empty-segment"),
    pytest.param("comics/x/", id="trailing-slash"),
    pytest.param("comics\\x", id="backslash"),
    pytest.param(".hidden", id="hidden"),
    pytest.param("comics/./x", id="dot-segment"),
    pytest.param("", id="empty"),
    pytest.param("a" * 600, id="too-long"),
    pytest.param("comics/x y", id="space"),
    pytest.param("comics/\u00e9", id="non-ascii"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey, match="storage key"):
        storage.put(key, b"x", "text/plain")
    with pytest.raises(InvalidKey):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["comics", "../", "/"])
def test_delete_prefix_refuses_a_bad_prefix(storage: Storage, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        storage.delete_prefix(prefix)


def test_local_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    key = "comics/a/comic.pdf"
    storage.put(key, b"a" * 1000, "application/pdf")
    inode_before = os.stat(storage.path(key)).st_ino
    storage.put(key, b"b" * 1000, "application/pdf")
    # Rename into place: a new file replaced the old one, never a half-written one.
    assert os.stat(storage.path(key)).st_ino != inode_before
    assert storage.get(key) == b"b" * 1000
    assert [p.name for p in storage.path(key).parent.iterdir()] == ["comic.pdf"]


def test_local_symlink_cannot_lead_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    storage = LocalStorage(root)
    (root / "comics").mkdir()
    (root / "comics" / "evil").symlink_to(outside)
    with pytest.raises(InvalidKey, match="leaves the storage root"):
        storage.put("comics/evil/x.png", b"x", "image/png")
    assert list(outside.iterdir()) == []


def test_s3_objects_keep_their_content_type(moto_url: str) -> None:
    storage = s3_storage(moto_url, f"test-{uuid.uuid4().hex[:12]}")
    storage.put("comics/a/comic.pdf", b"%PDF", "application/pdf")
    head = storage.client.head_object(Bucket=storage.bucket, Key="comics/a/comic.pdf")
    assert head["ContentType"] == "application/pdf"


def test_s3_client_has_timeouts_and_bounded_retries(moto_url: str) -> None:
    storage = s3_storage(
        moto_url, f"test-{uuid.uuid4().hex[:12]}", connect_timeout=2, read_timeout=7, max_attempts=3
    )
    config = storage.client.meta.config
    assert config.connect_timeout == 2
    assert config.read_timeout == 7
    assert config.retries["total_max_attempts"] == 3  # the first try included


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_s3_unreachable_fails_after_bounded_attempts() -> None:
    storage = S3Storage.connect(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        access_key_id=TEST_S3_KEY_ID,
        secret_access_key=TEST_S3_SECRET,
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=2,
    )
    before = (
        REGISTRY.get_sample_value(
            "morpheus_storage_errors_total",
            {"backend": "s3", "operation": "put", "outcome": "EndpointConnectionError"},
        )
        or 0.0
    )
    with pytest.raises(EndpointConnectionError):
        storage.put("comics/a/x.png", b"x", "image/png")
    after = REGISTRY.get_sample_value(
        "morpheus_storage_errors_total",
        {"backend": "s3", "operation": "put", "outcome": "EndpointConnectionError"},
    )
    assert after == before + 1


def _settings(tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "_secrets_dir": tmp_path,
        "environment": "test",
        "database_url": "postgresql+psycopg://postgres@127.0.0.1:5432/unused",
        "redis_url": "redis://127.0.0.1:6379/0",
        "secret_key": "test-only-secret-key-not-for-production-0123456789",
        "storage_path": tmp_path / "storage",
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def test_get_storage_local(tmp_path: Path) -> None:
    storage = get_storage(_settings(tmp_path))
    assert isinstance(storage, LocalStorage)
    storage.put("comics/a/comic.cbz", b"PK", "application/vnd.comicbook+zip")
    assert (tmp_path / "storage" / "comics" / "a" / "comic.cbz").read_bytes() == b"PK"


def test_get_storage_s3(tmp_path: Path, moto_url: str) -> None:
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    storage = get_storage(
        _settings(
            tmp_path,
            storage_backend="s3",
            s3_endpoint_url=moto_url,
            s3_bucket=bucket,
            s3_access_key_id=TEST_S3_KEY_ID,
            s3_secret_access_key=TEST_S3_SECRET,
        )
    )
    assert isinstance(storage, S3Storage)
    storage.ensure_bucket()
    storage.put("comics/a/comic.pdf", b"%PDF", "application/pdf")
    assert storage.get("comics/a/comic.pdf") == b"%PDF"
