"""Schemathesis against the served API: requests generated from the OpenAPI document
(valid and invalid ones) sent to a real Gunicorn worker on the real PostgreSQL and Redis,
and not one answer may be a 5xx. Bounded: a few dozen requests per operation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from api_helpers import NOVEL
from hypothesis import HealthCheck, Phase, given, settings
from morpheus.db import api_keys
from morpheus.db.session import make_engine, make_sessionmaker
from morpheus.settings import Settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from server_helpers import free_port, settings_env, start_gunicorn, stop, wait_until_live

API_HOST = "api.morpheus.localhost"
EXAMPLES_PER_OPERATION = 20
# The submission takes most of the input, so it gets more tries.
EXAMPLES = {"POST /v1/comics": 100}
# Test-only value: never used outside the test suite.
SECRET_KEY = "test-only-secret-key-for-the-fuzzing-server-0123456789"


@dataclass(frozen=True)
class Served:
    base_url: str
    headers: dict[str, str]
    log_path: Path
    comic_id: str  # a comic of this key's, so that not every request is a 404


@pytest.fixture(scope="module")
def served(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The service in Gunicorn (one worker), with an API key; rate limits off."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "storage").mkdir()
    (root / "secrets").mkdir()
    queue = f"test-comics-{uuid.uuid4().hex[:12]}"
    settings_ = Settings(
        _secrets_dir=root / "secrets",
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        queue_name=queue,
        storage_path=root / "storage",
        secret_key=SECRET_KEY,
        rate_limit_enabled=False,
        log_level="INFO",
    )
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    with make_sessionmaker(engine)() as session:
        key = api_keys.create_api_key(session, f"fuzz-{uuid.uuid4().hex[:8]}").key
    engine.dispose()
    port = free_port()
    log_path = root / "gunicorn.log"
    server = start_gunicorn(settings_env(settings_, root / "secrets"), port, 1, log_path)
    try:
        wait_until_live(port, server, log_path)
        base_url = f"http://127.0.0.1:{port}"
        headers = {"Host": API_HOST, "Authorization": f"Bearer {key}"}
        submitted = httpx.post(
            f"{base_url}/v1/comics",
            json={"title": "The Lighthouse", "text": NOVEL},
            headers=headers,
            timeout=30,
        )
        assert submitted.status_code == 202, submitted.text
        yield Served(base_url, headers, log_path, submitted.json()["id"])
    finally:
        stop(server)
        client = redis.Redis.from_url(redis_url)
        try:
            for pattern in (f"bull:{queue}:*", f"morpheus:{queue}:*"):
                keys = list(client.scan_iter(match=pattern))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()


@pytest.fixture(scope="module")
def openapi_document(served: Served) -> dict[str, Any]:
    response = httpx.get(f"{served.base_url}/openapi.json", headers={"Host": API_HOST}, timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def api_schema(openapi_document: dict[str, Any], served: Served) -> Any:
    return schemathesis.openapi.from_dict(openapi_document)


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_every_reference_in_the_openapi_document_resolves(
    openapi_document: dict[str, Any],
) -> None:
    refs = set(references(openapi_document))
    assert refs, "the document refers to its schemas"
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = openapi_document
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
    body = openapi_document["paths"]["/v1/comics"]["post"]["requestBody"]["content"]
    style = body["application/json"]["schema"]["properties"]["style"]
    assert style["properties"]["page_format"]["enum"] == ["a4", "letter", "a5"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(api_schema: Any, served: Served, mode: Any) -> None:
    """Every operation, with data that fits its schema and data that does not."""
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=mode)
        if "{comic_id}" in operation.path:
            real = operation.as_strategy(
                generation_mode=mode, path_parameters={"comic_id": served.comic_id}
            )
            strategy = strategy | real

        @settings(
            max_examples=EXAMPLES.get(operation.label, EXAMPLES_PER_OPERATION),
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call(base_url=served.base_url, headers=served.headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            check()
        except Exception as exc:  # every operation is tried, then all are reported
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
