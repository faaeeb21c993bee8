"""The OpenAPI document the API serves: valid, complete, and true to the error answers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from openapi_spec_validator import validate

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
# Every operation may answer these (no key, too many requests, no database or queue).
EVERY_OPERATION = {"401", "429", "503"}
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


async def document(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    served: dict[str, Any] = response.json()
    return served


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def test_the_served_document_is_valid_openapi(api: httpx.AsyncClient) -> None:
    validate(await document(api))


async def test_every_operation_documents_its_errors_in_one_shape(
    api: httpx.AsyncClient,
) -> None:
    doc = await document(api)
    listed = operations(doc)
    assert len(listed) >= 7
    for method, path, operation in listed:
        codes = set(operation["responses"])
        expected = set(EVERY_OPERATION)
        if "{comic_id}" in path:
            expected.add("404")
        if path.endswith((".pdf", ".cbz", "/cancel")) or method == "DELETE":
            expected.add("409")
        if method == "POST" and path == "/v1/comics":
            expected |= {"413", "415", "422"}
        assert expected <= codes, f"{method} {path} lacks {sorted(expected - codes)}"
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == ERROR_REF, f"{method} {path} {code}: {schema}"
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["detail"]
    assert set(error["properties"]) == {"detail", "limit"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]


async def test_error_answers_match_the_documented_shape(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    doc = await document(api)
    schema = {**doc["components"]["schemas"]["ErrorBody"], "additionalProperties": False}
    missing = f"/v1/comics/{uuid.uuid4()}"
    answers = [
        await api.get(missing),  # 401
        await api.get(missing, headers=auth),  # 404
        await api.put(missing, headers=auth),  # 405
        await api.post("/v1/comics", content=b"x", headers={**auth, "Content-Type": "text/csv"}),
        await api.post("/v1/comics", json={"title": ""}, headers=auth),  # 422
    ]
    assert [answer.status_code for answer in answers] == [401, 404, 405, 415, 422]
    for answer in answers:
        jsonschema.validate(answer.json(), schema)


async def test_method_not_allowed_lists_every_method_of_the_path(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await api.put(f"/v1/comics/{uuid.uuid4()}", headers=auth)
    assert response.status_code == 405
    allowed = [method.strip() for method in response.headers["Allow"].split(",")]
    assert set(allowed) == {"GET", "DELETE"}
    assert response.json() == {"detail": "Method Not Allowed"}

    response = await api.get("/v1/comics", headers=auth)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


async def test_every_ref_points_into_the_document(api: httpx.AsyncClient) -> None:
    doc = await document(api)
    found = refs(doc)
    assert found
    for ref in found:
        assert ref.startswith("#/components/"), ref  # never #/$defs/... (not in OpenAPI)
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"dangling {ref}"
            node = node[part]


def concrete(path: str) -> str:
    return path.replace("{comic_id}", str(uuid.uuid4())).replace("{number}", "1")


async def test_method_not_allowed_names_the_documented_methods_of_every_path(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    doc = await document(api)
    for path, item in doc["paths"].items():
        documented = {method.upper() for method in item if method in METHODS}
        response = await api.request("PATCH", concrete(path), headers=auth)
        assert response.status_code == 405, path
        allowed = {method.strip() for method in response.headers["Allow"].split(",")}
        assert allowed == documented, path


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_operations() -> set[tuple[str, str]]:
    """The operations the README's API section lists, as the document names them."""
    section = README.read_text(encoding="utf-8").split("## The API", 1)[1]
    block = section.split("```", 2)[1]
    listed = set()
    for line in block.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] not in {m.upper() for m in METHODS}:
            continue
        path = parts[1].replace("{id}", "{comic_id}").replace("{n}", "{number}")
        for variant in (path.replace(".pdf|.cbz", ".pdf"), path.replace(".pdf|.cbz", ".cbz")):
            listed.add((parts[0], variant))
    return listed


async def test_the_readme_lists_every_operation(api: httpx.AsyncClient) -> None:
    doc = await document(api)
    served = {(method, path) for method, path, _ in operations(doc)}
    assert ("DELETE", "/v1/comics/{comic_id}") in served
    assert readme_operations() == served
