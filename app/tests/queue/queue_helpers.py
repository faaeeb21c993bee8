"""Polling and inspection helpers of the queue tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as redis
from morpheus.db import comics
from morpheus.db.models import Comic
from morpheus.db.session import session_scope
from morpheus.pipeline.segment import segment
from morpheus.settings import Settings, env_name
from pydantic import SecretStr

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until ``accept`` holds; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not accept(value):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


async def job_hash(client: redis.Redis, settings: Settings, job_id: str) -> dict[str, Any]:
    """The BullMQ job hash of ``job_id``."""
    return await client.hgetall(f"bull:{settings.queue_name}:{job_id}")


async def queue_events(client: redis.Redis, settings: Settings) -> list[tuple[int, dict[str, str]]]:
    """BullMQ's event stream of the queue: (milliseconds of the entry, fields)."""
    entries = await client.xrange(f"bull:{settings.queue_name}:events")
    return [(int(entry_id.split("-")[0]), fields) for entry_id, fields in entries]


def settings_env(settings: Settings, secrets_dir: str, **overrides: Any) -> dict[str, str]:
    """The environment that gives a child process these settings (plus ``overrides``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MORPHEUS_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    values = settings.model_dump()
    values.update(overrides)
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[env_name(name)] = str(value)
    env["MORPHEUS_SECRETS_DIR"] = secrets_dir
    return env


class WorkerProcess:
    """A ``morpheus worker`` child process (or ``command``), its output kept in a file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, command: list[str] | None = None
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "morpheus.cli", "worker"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        """The exit code; fails the test (and kills the process) after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"worker {self.pid} did not exit in {timeout} s\n{self.output()}")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill the process if it still runs (test clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# A tiny novel (two chapters, about ten panels) and small sizes, so a whole comic takes
# well under a second to make.
TINY_NOVEL = """Chapter 1: The Harbour

The ship came into the harbour at dawn. Mara stood on the deck and watched the gulls.

"We are late," said Tom.

"We are alive," Mara said. "That is enough."

The crew carried the crates down the plank. A boy ran along the quay with a letter.

* * *

That night the lanterns burned in the tavern. Tom counted the coins on the table.

"Enough for a week," he said.

Mara read the letter by the fire. Her face went pale, and she folded it twice.

Chapter 2: The Road

The road climbed into the hills. Mara walked ahead, and Tom followed with the bags.

"How far?" asked Tom.

"Two days," said Mara.

Rain came in the afternoon. They sheltered under an old oak by the river.

At dusk they saw the lights of the town below the ridge.
"""
TINY_PANELS = segment(TINY_NOVEL).panel_count
SMALL_OPTIONS = {"panel_width": 80, "panel_height": 60, "page_width": 124, "page_height": 176}


def create_tiny_comic(settings: Settings, title: str = "The Harbour") -> str:
    """A queued comic of the tiny novel; returns its id."""
    with session_scope(settings) as session:
        comic = comics.create_comic(
            session, title=title, source_text=TINY_NOVEL, options=SMALL_OPTIONS
        )
        return str(comic.id)


def load_comic(settings: Settings, comic_id: str) -> Comic:
    with session_scope(settings) as session:
        comic = comics.get_comic(session, comic_id)
        assert comic is not None
        return comic


def load_pages(settings: Settings, comic_id: str) -> list[tuple[int, str, int, int]]:
    with session_scope(settings) as session:
        return [
            (page.number, page.storage_key, page.width, page.height)
            for page in comics.list_pages(session, comic_id)
        ]


async def comic_status(settings: Settings, comic_id: str) -> Comic:
    return await asyncio.to_thread(load_comic, settings, comic_id)
