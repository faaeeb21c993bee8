"""Read a submitted novel in a child process, bounded in time, memory and number.

What an upload costs to read is not what it weighs: a small EPUB may unpack to a great
deal of markup, and Markdown can send a regular expression on a long search. So
:func:`extract` never reads on the event loop, nor in the web worker's own memory. Each
novel is read by :func:`morpheus.pipeline.ingest.extract_text` in a forked child, which

- is killed once ``ingest_timeout_seconds`` have passed (the request gets 422), and has
  an ``RLIMIT_CPU`` a little longer, in case its parent is gone;
- may add no more than ``ingest_memory_bytes`` to its address space (``RLIMIT_AS``;
  past that it gets 413);
- is one of at most ``ingest_concurrency`` per web worker process; other submissions
  wait for a turn, their event loop free to answer everything else.

The child touches no connection, lock or logger of its parent: it reads bytes it was
handed and sends back the text (or the refusal) through a pipe, then exits.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import signal
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import anyio.to_thread

from morpheus.logging import get_logger
from morpheus.pipeline.ingest import IngestLimits, NovelRejected, extract_text
from morpheus.settings import Settings

# Its lines keep the logger name they had when this lived in the API package, so that
# log queries selecting on it still find them.
log = get_logger("morpheus.api.extraction")

# Fork: the child starts at once with the code it needs, and only runs pure Python over
# the bytes it was given (no threads, no sockets, no logging).
_CONTEXT = multiprocessing.get_context("fork")


def _address_space() -> int | None:
    """This process's virtual memory size in bytes (Linux), or None when unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _limit(kind: int, soft: int) -> None:
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(kind, (soft, hard))


def _child(
    conn: Connection,
    data: bytes,
    filename: str | None,
    content_type: str | None,
    limits: IngestLimits,
    cpu_seconds: int,
    memory_bytes: int,
) -> None:
    # The parent's signal handlers write to its event loop's wakeup descriptor: not ours.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _limit(resource.RLIMIT_CPU, cpu_seconds)
    if memory_bytes > 0 and (size := _address_space()) is not None:
        _limit(resource.RLIMIT_AS, size + memory_bytes)
    result: tuple[Any, ...]
    try:
        result = ("text", extract_text(data, filename, content_type, limits))
    except NovelRejected as exc:
        result = ("rejected", exc.status_code, exc.message, exc.limit)
    except MemoryError:
        result = ("memory",)
    except Exception as exc:  # a defect of the reader: the parent logs its kind
        result = ("error", type(exc).__name__)
    try:
        conn.send(result)
    except MemoryError:
        conn.send(("memory",))
    finally:
        conn.close()


def _timed_out(timeout: float) -> NovelRejected:
    return NovelRejected(
        422,
        f"Reading the novel took longer than the {timeout:g} s we allow (the time limit "
        "on reading a novel): it is too large or too complicated.",
        "ingest_timeout_seconds",
    )


def _out_of_memory() -> NovelRejected:
    return NovelRejected(
        413,
        "Reading the novel needs more memory than we allow (the memory limit on reading a "
        "novel): it is too large or too complicated.",
        "ingest_memory_bytes",
    )


def extract_in_child(
    data: bytes,
    filename: str | None,
    content_type: str | None,
    limits: IngestLimits,
    *,
    timeout: float,
    memory_bytes: int,
) -> str:
    """:func:`extract_text` in a child process (blocking: call it from a thread)."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    cpu_seconds = math.ceil(timeout) + 1
    process = _CONTEXT.Process(
        target=_child,
        args=(sender, data, filename, content_type, limits, cpu_seconds, memory_bytes),
        name="morpheus-ingest",
        daemon=True,
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            log.warning("novel refused: reading it took too long", timeout_seconds=timeout)
            raise _timed_out(timeout)
        try:
            result = receiver.recv()
        except (EOFError, OSError):
            result = None
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()
    if result is None:
        # The child died without an answer: out of CPU time (SIGXCPU) or memory.
        log.warning("novel refused: the reader died", exitcode=process.exitcode)
        if process.exitcode == -signal.SIGXCPU:
            raise _timed_out(timeout)
        raise _out_of_memory()
    if result[0] == "text":
        text: str = result[1]
        return text
    if result[0] == "memory":
        log.warning("novel refused: reading it needed too much memory")
        raise _out_of_memory()
    if result[0] == "error":
        log.error("novel refused: the reader failed", error=result[1])
        raise NovelRejected(422, "The novel could not be read: the file may be damaged.")
    _, status_code, message, limit = result
    raise NovelRejected(status_code, message, limit)


async def extract(
    settings: Settings,
    limiter: anyio.CapacityLimiter,
    data: bytes,
    filename: str | None,
    content_type: str | None,
) -> str:
    """The novel's text, read in a child process; :class:`NovelRejected` otherwise."""
    work = partial(
        extract_in_child,
        data,
        filename,
        content_type,
        IngestLimits.from_settings(settings),
        timeout=settings.ingest_timeout_seconds,
        memory_bytes=settings.ingest_memory_bytes,
    )
    return await anyio.to_thread.run_sync(work, limiter=limiter)
