"""PostgreSQL stops and starts again under the running app: 503s meanwhile, then service.

A private PostgreSQL cluster (``initdb`` in a temporary directory, on a free port) stands
for the production server, so the test can stop and start it. While it is down every site
answers 503 with ``Retry-After`` (JSON on the API, an HTML page on the storefront and the
dashboard) and readiness fails; the first request after it is back is served, although
every connection the pool held died with the server.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_helpers import API, DESK, NOVEL, SHOP, TEST_PASSWORD, client_for
from fastapi import FastAPI
from morpheus.db import api_keys, comics, schema, users
from morpheus.db.session import make_engine, make_sessionmaker

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INTERNAL = "http://10.1.2.3:8000"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A throw-away PostgreSQL server; run as the postgres user when the tests run as root."""

    directory: Path
    port: int
    user: str | None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(PG_BIN / args[0]), *args[1:]],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    user = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL")
    directory = Path(tempfile.mkdtemp(prefix="morpheus-pg-"))
    if user is not None:
        shutil.chown(directory, user=user)
    server = Cluster(directory, _free_port(), user)
    try:
        server.init()
        server.start()
        createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(server.port)]
        subprocess.run([*createdb, "-U", "postgres", "morpheus"], check=True, timeout=30)
        schema.upgrade(server.url("morpheus"))
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Records:
    api_key: str
    api_comic: str
    shop_comic: str
    username: str


@pytest.fixture(scope="module")
def records(cluster: Cluster) -> Records:
    engine = make_engine(cluster.url("morpheus"), pool_size=1, max_overflow=0)
    try:
        with make_sessionmaker(engine)() as session:
            key = api_keys.create_api_key(session, "outage")
            api_comic = comics.create_comic(
                session, title="Through the API", source_text=NOVEL, api_key_id=key.api_key.id
            )
            shop_comic = comics.create_comic(session, title="By the shop", source_text=NOVEL)
            username = f"op-{uuid.uuid4().hex[:8]}"
            users.create_user(session, username, TEST_PASSWORD)
            return Records(key.key, str(api_comic.id), str(shop_comic.id), username)
    finally:
        engine.dispose()


async def log_in(desk: httpx.AsyncClient, username: str) -> httpx.Response:
    form = await desk.get("/login")
    match = CSRF_RE.search(form.text)
    assert match, form.text
    credentials = {"username": username, "password": TEST_PASSWORD, "csrf_token": match[1]}
    return await desk.post("/login", data=credentials)


async def test_postgresql_down_is_a_503_everywhere_and_the_first_request_after_is_served(
    app_factory: Callable[..., FastAPI], cluster: Cluster, records: Records
) -> None:
    app = app_factory(database_url=cluster.url("morpheus"), db_connect_timeout_seconds=2)
    auth = {"Authorization": f"Bearer {records.api_key}"}
    async with (
        client_for(app, API) as api,
        client_for(app, SHOP) as shop,
        client_for(app, DESK) as desk,
        client_for(app, INTERNAL) as probe,
    ):

        async def every_site() -> list[httpx.Response]:
            return [
                await api.get(f"/v1/comics/{records.api_comic}", headers=auth),
                await api.post("/v1/comics", json={"title": "T", "text": NOVEL}, headers=auth),
                await shop.get(f"/comics/{records.shop_comic}"),
                await desk.get("/"),
            ]

        assert (await log_in(desk, records.username)).status_code == 303
        # Every site has used (and pooled) connections before the server goes away.
        before = await every_site()
        assert [r.status_code for r in before] == [200, 202, 200, 200]
        assert (await probe.get("/health/ready")).status_code == 200

        cluster.stop()
        try:
            during = await every_site()
            ready = await probe.get("/health/ready")
        finally:
            cluster.start()

        for response in during[:2]:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.headers["retry-after"] == "5"
            assert "database is not available" in response.json()["detail"]
        for response in during[2:]:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["retry-after"] == "5"
            assert "Temporarily unavailable" in response.text
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["postgresql"]

        # The connections pooled before the restart are all dead; none of them shows.
        after = await every_site()
        assert [r.status_code for r in after] == [200, 202, 200, 200], [r.text for r in after]
        assert (await probe.get("/health/ready")).status_code == 200
