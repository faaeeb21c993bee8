"""A novel of more than 50,000 words becomes a complete comic: every panel drawn,
pages composed, PDF and CBZ built, and their counts agree. (Small panels and pages keep
the time reasonable; app/benchmarks/long_novel.py runs the same at full size.)"""

from __future__ import annotations

import importlib.util
import io
import re
import zipfile
from pathlib import Path
from types import ModuleType
from xml.etree import ElementTree

import pytest
from morpheus.pipeline.compose import compose_pages, page_count, plan_pages
from morpheus.pipeline.ingest import IngestLimits, extract_text, word_count
from morpheus.pipeline.package import ComicMetadata, build_cbz, build_pdf, png_size
from morpheus.pipeline.segment import BALLOON_MAX_CHARS, CAPTION_MAX_CHARS, segment
from morpheus.providers.local import LocalProvider

PANEL = (128, 96)
PAGE = (310, 438)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "novel.py"


def load_novel_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("morpheus_test_novel", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_novel_is_long_and_deterministic() -> None:
    novel = load_novel_module()
    text = novel.generate_novel()
    assert word_count(text) >= 50_000
    assert novel.generate_novel() == text
    assert novel.generate_novel(seed=8) != text


@pytest.mark.slow
def test_long_novel_becomes_a_complete_comic() -> None:
    novel = load_novel_module()
    raw = novel.generate_novel().encode("utf-8")
    text = extract_text(raw, "the-long-night.txt", "text/plain", IngestLimits())
    assert word_count(text) >= 50_000

    script = segment(text)
    assert segment(text) == script
    panels = list(script.panels())
    chapter_headings = re.findall(r"^Chapter \d+: .+$", text, flags=re.MULTILINE)
    assert [c.title for c in script.chapters] == chapter_headings
    assert len(panels) == script.panel_count > 1000
    assert all(len(p.caption or "") <= CAPTION_MAX_CHARS for p in panels)
    assert all(len(b.text) <= BALLOON_MAX_CHARS for p in panels for b in p.balloons)
    assert sum(1 for p in panels for b in p.balloons if b.speaker) > 500

    provider = LocalProvider(supersample=1)
    rendered = [(panel, provider.render(panel, *PANEL)) for panel in panels]
    assert all(png_size(png) == PANEL for _, png in rendered)

    title = "The Long Night"
    pages = compose_pages(
        rendered,
        title=title,
        writer="A. Writer",
        chapter_titles=script.chapter_titles(),
        page_width=PAGE[0],
        page_height=PAGE[1],
    )
    expected_pages = page_count(panels, title=title)
    assert len(pages) == expected_pages == len(plan_pages(panels)) + 1
    assert len(pages) >= len(panels) / 6
    assert all(png_size(page) == PAGE for page in pages)

    pdf = build_pdf(pages, title=title)
    assert re.search(rb"/Count (\d+)", pdf).group(1) == str(len(pages)).encode()
    assert len(re.findall(rb"/Type /Page /Parent", pdf)) == len(pages)

    cbz = build_cbz(pages, ComicMetadata(title=title, writer="A. Writer"))
    with zipfile.ZipFile(io.BytesIO(cbz)) as archive:
        names = archive.namelist()
        assert len(names) == len(pages) + 1
        info = ElementTree.fromstring(archive.read("ComicInfo.xml"))  # noqa: S314 - our own
    assert info.findtext("PageCount") == str(len(pages))
    assert len(info.findall("Pages/Page")) == len(pages)
