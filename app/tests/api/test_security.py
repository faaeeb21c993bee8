"""Host routing, security headers, CORS, trusted proxies and rate limits."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from api_helpers import API, DESK, NOVEL, SHOP, client_for
from fastapi import FastAPI
from morpheus.app import AppConfigError, create_app
from morpheus.db import api_keys, comics
from morpheus.settings import Settings
from sqlalchemy.orm import Session

SITES = [(API, "/v1/comics/not-a-uuid"), (SHOP, "/"), (DESK, "/login"), (API, "/health/live")]


# --- host routing -----------------------------------------------------------------------


async def test_each_site_answers_only_on_its_host(app: FastAPI, auth: dict[str, str]) -> None:
    async with client_for(app, "http://unknown.example") as stranger:
        assert (await stranger.get("/")).status_code == 404
        assert (await stranger.get("/v1/comics", headers=auth)).status_code == 404
        assert (await stranger.get("/login")).status_code == 404
        # Probes use whatever host name they like.
        assert (await stranger.get("/health/live")).status_code == 200
    async with client_for(app, SHOP) as shop:
        assert (await shop.post("/v1/comics", json={}, headers=auth)).status_code == 404
        assert (await shop.get("/login")).status_code == 404
    async with client_for(app, DESK) as desk:
        assert (await desk.post("/comics", data={"title": "x", "text": NOVEL})).status_code == 404
    async with client_for(app, API) as api:
        assert (await api.get("/login")).status_code == 404
        assert (await api.get("/static/style.css")).status_code == 404
    # The port in the Host header does not matter.
    async with client_for(app, "http://morpheus.localhost:8443") as shop_port:
        assert (await shop_port.get("/")).status_code == 200


def test_create_app_refuses_unusable_settings(settings: Settings) -> None:
    with pytest.raises(AppConfigError, match="must differ"):
        create_app(settings.model_copy(update={"dashboard_host": settings.storefront_host}))
    with pytest.raises(AppConfigError, match="MORPHEUS_API_HOST must be a bare host name"):
        create_app(settings.model_copy(update={"api_host": "https://api.example"}))
    with pytest.raises(AppConfigError, match="Settings"):
        create_app({"database_url": "x"})  # type: ignore[arg-type]


# --- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("base", "path"), SITES)
async def test_security_headers_on_every_site(app: FastAPI, base: str, path: str) -> None:
    async with client_for(app, base) as client:
        response = await client.get(path)
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in headers["permissions-policy"]
    assert "strict-transport-security" not in headers  # nginx's, over HTTP or HTTPS


async def test_request_id_is_echoed_or_generated(api: httpx.AsyncClient) -> None:
    given = await api.get("/health/live", headers={"X-Request-ID": "abc-123.def"})
    assert given.headers["x-request-id"] == "abc-123.def"
    for bad in ("has space", "x" * 300, "<script>", ""):
        response = await api.get("/health/live", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32
    a = (await api.get("/health/live")).headers["x-request-id"]
    b = (await api.get("/health/live")).headers["x-request-id"]
    assert a != b


# --- CORS -------------------------------------------------------------------------------


async def test_cors_allows_the_two_sites_only(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for origin in ("https://morpheus.localhost", "https://dashboard.morpheus.localhost"):
        preflight = await api.options(
            "/v1/comics",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        simple = await api.get("/v1/comics/not-a-uuid", headers={**auth, "Origin": origin})
        assert simple.headers["access-control-allow-origin"] == origin
        assert "access-control-allow-credentials" not in simple.headers

    evil = "https://evil.example"
    preflight = await api.options(
        "/v1/comics",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = await api.get("/v1/comics/not-a-uuid", headers={**auth, "Origin": evil})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_origins_setting_replaces_the_defaults(
    app_factory: Callable[..., FastAPI],
) -> None:
    app = app_factory(cors_origins=["https://shop.example"])
    async with client_for(app, API) as api:
        ok = await api.get("/v1/comics/x", headers={"Origin": "https://shop.example"})
        no = await api.get("/v1/comics/x", headers={"Origin": "https://morpheus.localhost"})
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in no.headers


# --- trusted proxies and rate limits ----------------------------------------------------


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    app: FastAPI, auth: dict[str, str], db_session: Session
) -> None:
    forwarded = {**auth, "X-Forwarded-For": "192.0.2.55"}
    body = {"title": "Forwarded", "text": NOVEL}
    async with client_for(app, API, addr="127.0.0.1") as via_proxy:
        trusted = await via_proxy.post("/v1/comics", json=body, headers=forwarded)
    async with client_for(app, API, addr="203.0.113.9") as direct:
        spoofed = await direct.post("/v1/comics", json=body, headers=forwarded)
    trusted_comic = comics.get_comic(db_session, trusted.json()["id"])
    spoofed_comic = comics.get_comic(db_session, spoofed.json()["id"])
    assert trusted_comic is not None and trusted_comic.client_addr == "192.0.2.55"
    assert spoofed_comic is not None and spoofed_comic.client_addr == "203.0.113.9"


async def test_storefront_rate_limit_uses_the_real_client_address(
    app_factory: Callable[..., FastAPI],
) -> None:
    app = app_factory(rate_limit_requests_per_minute=3)
    # A direct client cannot escape its limit by inventing X-Forwarded-For values.
    async with client_for(app, SHOP, addr="203.0.113.10") as direct:
        codes = [
            (await direct.get("/", headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code
            for n in range(5)
        ]
    assert codes == [200, 200, 200, 429, 429]
    # Behind the trusted proxy every forwarded client has its own budget.
    async with client_for(app, SHOP, addr="127.0.0.1") as proxy:
        codes = [
            (await proxy.get("/", headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code
            for n in range(5)
        ]
        assert codes == [200] * 5
        limited = [
            await proxy.get("/", headers={"X-Forwarded-For": "192.0.2.200"}) for _ in range(4)
        ]
    assert [r.status_code for r in limited] == [200, 200, 200, 429]
    refused = limited[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Too many requests" in refused.text


async def test_api_rate_limit_is_per_key(
    app_factory: Callable[..., FastAPI], auth: dict[str, str], db_session: Session
) -> None:
    app = app_factory(rate_limit_requests_per_minute=2)
    other = {"X-API-Key": api_keys.create_api_key(db_session, "other").key}
    path = f"/v1/comics/{uuid.uuid4()}"
    async with client_for(app, API) as api:
        statuses = [(await api.get(path, headers=auth)).status_code for _ in range(3)]
        assert statuses == [404, 404, 429]
        refused = await api.get(path, headers=auth)
        assert refused.status_code == 429
        assert refused.headers["retry-after"].isdigit()
        assert refused.json()["detail"].startswith("Too many requests")
        assert (await api.get(path, headers=other)).status_code == 404


async def test_api_submissions_are_limited_per_hour(
    app_factory: Callable[..., FastAPI], auth: dict[str, str]
) -> None:
    app = app_factory(rate_limit_submissions_per_hour=1)
    async with client_for(app, API) as api:
        body = {"title": "One", "text": NOVEL}
        assert (await api.post("/v1/comics", json=body, headers=auth)).status_code == 202
        refused = await api.post("/v1/comics", json=body, headers=auth)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 3600


async def test_rate_limits_can_be_switched_off(app_factory: Callable[..., FastAPI]) -> None:
    app = app_factory(rate_limit_enabled=False, rate_limit_requests_per_minute=1)
    async with client_for(app, SHOP) as shop:
        assert [(await shop.get("/")).status_code for _ in range(3)] == [200, 200, 200]
