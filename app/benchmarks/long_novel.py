"""Benchmark: a 50,000-word novel turned into a full-size comic with the local provider.

Runs segment -> render every panel -> compose pages -> PDF + CBZ, and prints the wall
time of each stage, panels per second, the sizes of the outputs and the peak RSS of the
process (``resource.getrusage``).

    cd app && ../.venv/bin/python benchmarks/long_novel.py [--words 50000]
        [--panel 800x600] [--out /tmp/long-novel]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time
from pathlib import Path
from types import ModuleType

from morpheus.pipeline.compose import PANEL_HEIGHT, PANEL_WIDTH, iter_pages, page_count
from morpheus.pipeline.ingest import word_count
from morpheus.pipeline.package import ComicMetadata, build_cbz, build_pdf
from morpheus.pipeline.segment import segment
from morpheus.providers.local import LocalProvider

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "novel.py"


def _novel_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("morpheus_bench_novel", FIXTURE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the novel generator at {FIXTURE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=50_000)
    parser.add_argument(
        "--panel", default=f"{PANEL_WIDTH}x{PANEL_HEIGHT}", help="panel size WIDTHxHEIGHT"
    )
    parser.add_argument("--out", type=Path, default=None, help="write comic.pdf/.cbz here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.panel.lower().split("x"))

    timings: dict[str, float] = {}
    start = time.perf_counter()
    text = _novel_module().generate_novel(words=args.words)
    words = word_count(text)

    t = time.perf_counter()
    script = segment(text)
    panels = list(script.panels())
    timings["segment"] = time.perf_counter() - t

    provider = LocalProvider()
    t = time.perf_counter()
    rendered = [(panel, provider.render(panel, width, height)) for panel in panels]
    timings["render"] = time.perf_counter() - t
    panel_bytes = sum(len(png) for _, png in rendered)

    title = "The Long Night"
    t = time.perf_counter()
    pages = list(
        iter_pages(
            rendered, title=title, writer="A. Writer", chapter_titles=script.chapter_titles()
        )
    )
    timings["compose"] = time.perf_counter() - t
    if len(pages) != page_count(panels, title=title):
        raise SystemExit("page count does not match the plan")

    t = time.perf_counter()
    pdf = build_pdf(pages, title=title, author="A. Writer")
    timings["pdf"] = time.perf_counter() - t
    t = time.perf_counter()
    cbz = build_cbz(pages, ComicMetadata(title=title, writer="A. Writer"))
    timings["cbz"] = time.perf_counter() - t
    total = time.perf_counter() - start

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "comic.pdf").write_bytes(pdf)
        (args.out / "comic.cbz").write_bytes(cbz)

    print(
        f"novel: {words} words, {len(script.chapters)} chapters, "
        f"{sum(len(c.scenes) for c in script.chapters)} scenes"
    )
    print(f"panels: {len(panels)} at {width}x{height}, {panel_bytes / 2**20:.1f} MiB of PNG")
    print(f"pages: {len(pages)} (title page included)")
    for stage, seconds in timings.items():
        print(f"  {stage:<8} {seconds:8.2f} s")
    print(f"render rate: {len(panels) / timings['render']:.1f} panels/s")
    print(f"end to end: {len(panels) / total:.1f} panels/s")
    print(f"outputs: pdf {len(pdf) / 2**20:.1f} MiB, cbz {len(cbz) / 2**20:.1f} MiB")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"wall time: {total:.2f} s (cpu {usage.ru_utime + usage.ru_stime:.2f} s, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)"
    )
    print(f"peak RSS: {_peak_rss_mib():.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
