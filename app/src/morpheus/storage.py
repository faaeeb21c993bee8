"""Where panels, pages and finished comics are kept: a local directory or S3.

Keys look like ``comics/{id}/panels/{n:05d}.png``; they are validated so that no key can
leave its storage root. Local writes are atomic (a temporary file renamed into place),
so a reader never sees half a file, and a re-run simply overwrites.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from morpheus.settings import Settings

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(?:/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")
MAX_KEY_LENGTH = 512

STORAGE_SECONDS = Histogram(
    "morpheus_storage_request_seconds",
    "Time spent on one storage operation.",
    ["backend", "operation", "outcome"],
)
STORAGE_ERRORS = Counter(
    "morpheus_storage_errors_total",
    "Storage operations that failed.",
    ["backend", "operation", "outcome"],
)


class StorageError(Exception):
    """A storage operation failed."""


class InvalidKey(StorageError, ValueError):
    """The key is not a safe storage key."""


class KeyNotFound(StorageError, KeyError):
    """Nothing is stored under the key."""


def comic_prefix(comic_id: object) -> str:
    return f"comics/{comic_id}/"


def panel_key(comic_id: object, number: int) -> str:
    return f"comics/{comic_id}/panels/{number:05d}.png"


def page_key(comic_id: object, number: int) -> str:
    return f"comics/{comic_id}/pages/{number:04d}.png"


def pdf_key(comic_id: object) -> str:
    return f"comics/{comic_id}/comic.pdf"


def cbz_key(comic_id: object) -> str:
    return f"comics/{comic_id}/comic.cbz"


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe: relative, no ``..``, no empty or hidden segments."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"storage key must be 1 to {MAX_KEY_LENGTH} characters")
    if not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise InvalidKey(
            f"invalid storage key {key!r}: use letters, digits, '.', '_', '-' and '/' "
            "between non-empty parts, with no '..'"
        )
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix is a key followed by '/': deleting never reaches above a folder."""
    if not prefix.endswith("/"):
        raise InvalidKey(f"storage prefix {prefix!r} must end with '/'")
    validate_key(prefix[:-1])
    return prefix


class Storage(Protocol):
    backend: str

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def list_keys(self, prefix: str) -> list[str]: ...


class _Timed:
    def __init__(self, backend: str, operation: str) -> None:
        self.backend, self.operation = backend, operation

    def __enter__(self) -> _Timed:
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None or issubclass(exc_type, KeyNotFound):
            outcome = "ok"
        else:
            outcome = "error"
            STORAGE_ERRORS.labels(self.backend, self.operation, exc_type.__name__).inc()
        STORAGE_SECONDS.labels(self.backend, self.operation, outcome).observe(
            time.perf_counter() - self.start
        )


class LocalStorage:
    """Files under a root directory."""

    backend = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKey(f"storage key {key!r} leaves the storage root")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with _Timed(self.backend, "put"):
            path = self.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def get(self, key: str) -> bytes:
        with _Timed(self.backend, "get"):
            try:
                return self.path(key).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise KeyNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        base = self.path(validate_prefix(prefix)[:-1])
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def delete_prefix(self, prefix: str) -> int:
        with _Timed(self.backend, "delete_prefix"):
            base = self.path(validate_prefix(prefix)[:-1])
            if not base.is_dir():
                return 0
            count = sum(1 for p in base.rglob("*") if p.is_file())
            shutil.rmtree(base)
            return count


class S3Storage:
    """Objects in an S3-compatible bucket (AWS S3, MinIO, moto, ...)."""

    backend = "s3"

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def connect(
        cls,
        *,
        bucket: str,
        endpoint_url: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
    ) -> S3Storage:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region or "us-east-1",
            config=config,
        )
        return cls(client, bucket)

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with _Timed(self.backend, "put"):
            self.client.put_object(
                Bucket=self.bucket, Key=validate_key(key), Body=data, ContentType=content_type
            )

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        with _Timed(self.backend, "get"):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=validate_key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise KeyNotFound(key) from None
                raise
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with _Timed(self.backend, "exists"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=validate_key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=validate_prefix(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"]

    def list_keys(self, prefix: str) -> list[str]:
        with _Timed(self.backend, "list"):
            return sorted(self._iter_keys(prefix))

    def delete_prefix(self, prefix: str) -> int:
        with _Timed(self.backend, "delete_prefix"):
            keys = list(self._iter_keys(prefix))
            for start in range(0, len(keys), 1000):
                batch = keys[start : start + 1000]
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            return len(keys)


def _secret(value: object) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def get_storage(settings: Settings) -> Storage:
    """The storage the settings choose: ``local`` (a directory) or ``s3``."""
    backend = (getattr(settings, "storage_backend", None) or "local").lower()
    if backend == "local":
        return LocalStorage(settings.storage_path)
    if backend == "s3":
        if not settings.s3_bucket:
            raise ValueError("storage_backend is 's3' but s3_bucket is not set")
        return S3Storage.connect(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=_secret(settings.s3_secret_access_key),
            region=settings.s3_region,
        )
    raise ValueError(f"unknown storage backend {backend!r}: choose 'local' or 's3'")
