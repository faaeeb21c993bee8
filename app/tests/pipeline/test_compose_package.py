"""Page composition and packaging: layouts, page numbers, title page; a PDF whose
structure is valid and a CBZ with a valid ComicInfo.xml; all deterministic."""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from morpheus import cancellation
from morpheus.cancellation import Cancelled, StopFlag
from morpheus.pipeline.compose import (
    LAYOUTS,
    PAGE_RHYTHM,
    choose_rows,
    compose_pages,
    iter_pages,
    page_count,
    plan_pages,
)
from morpheus.pipeline.package import (
    ComicMetadata,
    PackagingError,
    build_cbz,
    build_pdf,
    comic_info_xml,
    png_size,
    write_cbz,
    write_pdf,
)
from morpheus.pipeline.script import Balloon, Panel
from morpheus.pipeline.segment import segment
from morpheus.providers.local import LocalProvider
from PIL import Image, ImageStat

PAGE = (310, 438)  # a quarter-size page keeps the tests quick


def panels_for(chapters: dict[int, int]) -> list[Panel]:
    panels: list[Panel] = []
    for chapter, count in chapters.items():
        for _ in range(count):
            n = len(panels) + 1
            panels.append(
                Panel(
                    number=n,
                    chapter=chapter,
                    scene=1,
                    caption=f"Panel {n}.",
                    balloons=[Balloon("Anna", "Hello.")],
                    characters=["Anna"],
                    seed=n * 7919,
                    setting="field",
                )
            )
    return panels


def rendered(panels: list[Panel], size: tuple[int, int] = (160, 120)) -> list[tuple[Panel, bytes]]:
    provider = LocalProvider(supersample=1)
    return [(p, provider.render(p, *size)) for p in panels]


# --- planning ---------------------------------------------------------------------------


def test_plan_places_every_panel_once_in_order_and_chapters_start_pages() -> None:
    panels = panels_for({1: 13, 2: 1, 3: 30})
    plans = plan_pages(panels)
    flat = [i for plan in plans for i in plan.panel_indices]
    assert flat == list(range(len(panels)))
    for plan in plans:
        assert len({panels[i].chapter for i in plan.panel_indices}) == 1
        assert plan.opens_chapter == (
            plan.panel_indices[0] == 0 or panels[plan.panel_indices[0] - 1].chapter != plan.chapter
        )
    assert [p.number for p in plans] == list(range(1, len(plans) + 1))
    chapter_three = [len(p.panel_indices) for p in plans if p.chapter == 3]
    assert chapter_three[:5] == list(PAGE_RHYTHM[:5])
    assert sum(chapter_three) == 30
    assert chapter_three[-1] > 1  # no panel left alone on a chapter's last page
    assert len(set(chapter_three)) >= 3  # the count, and so the layout, varies
    assert all(n in LAYOUTS for n in chapter_three)


@pytest.mark.parametrize(
    ("aspect", "count", "expected"),
    [
        # 4:3 panels three across would letter too small to read
        (4 / 3, 6, {(2, 2, 2)}),
        (4 / 3, 5, {(2, 1, 2), (1, 2, 2), (2, 2, 1)}),
        (4 / 3, 3, {(1, 2), (2, 1)}),
        # square panels: a full-width row would be too tall; three across still reads
        (1.0, 6, {(2, 2, 2)}),
        (1.0, 5, {(3, 2)}),
    ],
)
def test_the_layout_that_fills_the_page_best_is_chosen(
    aspect: float, count: int, expected: set[tuple[int, ...]]
) -> None:
    chosen = {
        choose_rows(count, [aspect] * count, 1116, 1569, 20, beat=beat, min_cell_h=350)
        for beat in range(8)
    }
    assert chosen == expected  # and ties rotate from page to page


def test_page_count_includes_the_title_page() -> None:
    panels = panels_for({1: 10})
    assert page_count(panels) == len(plan_pages(panels))
    assert page_count(panels, title="T") == len(plan_pages(panels)) + 1


# --- composing --------------------------------------------------------------------------


def _img(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("panel_size", [(160, 120), (128, 128)], ids=["4:3", "square"])
def test_pages_are_pngs_of_page_size_with_panels_on_them(panel_size: tuple[int, int]) -> None:
    panels = rendered(panels_for({1: 7, 2: 4}), panel_size)
    pages = compose_pages(
        panels,
        title="A Title",
        writer="A. Writer",
        chapter_titles={1: "One", 2: "Two"},
        page_width=PAGE[0],
        page_height=PAGE[1],
    )
    assert len(pages) == page_count([p for p, _ in panels], title="A Title")
    for data in pages:
        assert png_size(data) == PAGE
        img = _img(data)
        assert max(ImageStat.Stat(img).stddev) > 20  # not blank


def test_chapter_opening_pages_carry_a_title_banner() -> None:
    panels = rendered(panels_for({1: 7}))
    pages = compose_pages(
        panels, chapter_titles={1: "The Beginning"}, page_width=PAGE[0], page_height=PAGE[1]
    )
    first, second = _img(pages[0]), _img(pages[1])
    band = (PAGE[0] // 2 - 20, 20, PAGE[0] // 2 + 20, 30)
    dark = lambda img: ImageStat.Stat(img.crop(band).convert("L")).mean[0]  # noqa: E731
    assert dark(first) < 100  # the black banner
    assert dark(second) > dark(first) + 50


def test_composing_is_deterministic() -> None:
    panels = rendered(panels_for({1: 6}))
    kwargs = {"title": "T", "page_width": PAGE[0], "page_height": PAGE[1]}
    assert compose_pages(panels, **kwargs) == compose_pages(panels, **kwargs)  # type: ignore[arg-type]


def test_no_panels_and_no_title_gives_no_pages() -> None:
    assert compose_pages([]) == []


# --- PDF --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pages() -> list[bytes]:
    panels = rendered(panels_for({1: 5, 2: 3}))
    return compose_pages(panels, title="The Long Night", page_width=PAGE[0], page_height=PAGE[1])


def test_pdf_structure_is_valid(pages: list[bytes]) -> None:
    pdf = build_pdf(pages, title="The Long Night", author="A. Writer")
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert (
        re.search(rb"/Type /Pages /Kids \[[^\]]*\] /Count (\d+)", pdf).group(1)
        == str(len(pages)).encode()
    )
    assert len(re.findall(rb"/Type /Page /Parent", pdf)) == len(pages)
    assert b"/Title (The Long Night)" in pdf and b"/Author (A. Writer)" in pdf
    # Every xref offset points at the object it names.
    start = int(re.search(rb"startxref\n(\d+)", pdf).group(1))
    assert pdf[start:].startswith(b"xref\n")
    header = re.match(rb"xref\n0 (\d+)\n", pdf[start:])
    size = int(header.group(1))
    entries = pdf[start + header.end() :].split(b"\n")[:size]
    for number, entry in enumerate(entries[1:], start=1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(b"%d 0 obj" % number)
    # A4 at 150 dpi maps to points; here a quarter page is 148.8 x 210.24 pt.
    assert b"/MediaBox [0 0 148.80 210.24]" in pdf


def test_pdf_images_are_the_page_pixels(pages: list[bytes]) -> None:
    pdf = build_pdf(pages)
    streams = re.findall(rb"/Subtype /Image .*?/Length (\d+) >>\nstream\n", pdf)
    assert len(streams) == len(pages)
    first = re.search(rb"/Subtype /Image .*?/Length (\d+) >>\nstream\n", pdf)
    raw = zlib.decompress(pdf[first.end() : first.end() + int(first.group(1))])
    width, height = PAGE
    assert len(raw) == height * (1 + width * 3)  # PNG scanlines: filter byte + RGB


def test_pdf_is_deterministic(pages: list[bytes]) -> None:
    assert build_pdf(pages, title="T") == build_pdf(pages, title="T")


def test_pdf_accepts_non_rgb_pngs_by_converting_them() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (20, 30), (10, 200, 30, 128)).save(buf, format="PNG")
    pdf = build_pdf([buf.getvalue()])
    assert b"/Width 20 /Height 30 /ColorSpace /DeviceRGB" in pdf


PACKAGING_FAILURES = [
    pytest.param([], "there are no pages to put in the PDF", id="no-pages"),
    pytest.param([b"GIF89a not a png"], "a page is not a PNG image", id="not-png"),
]


@pytest.mark.parametrize(("bad_pages", "message"), PACKAGING_FAILURES)
def test_pdf_failures(bad_pages: list[bytes], message: str) -> None:
    with pytest.raises(PackagingError, match=message):
        build_pdf(bad_pages)


# --- CBZ --------------------------------------------------------------------------------


def test_cbz_holds_the_pages_and_a_valid_comic_info(pages: list[bytes]) -> None:
    meta = ComicMetadata(title="The Long Night", writer="A. Writer", language_iso="en")
    cbz = build_cbz(pages, meta)
    with zipfile.ZipFile(io.BytesIO(cbz)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == [f"page_{i:04d}.png" for i in range(1, len(pages) + 1)] + ["ComicInfo.xml"]
        for i, data in enumerate(pages):
            assert archive.read(names[i]) == data
            assert archive.getinfo(names[i]).compress_type == zipfile.ZIP_STORED
            assert archive.getinfo(names[i]).external_attr >> 16 == 0o100644
        info = ElementTree.fromstring(archive.read("ComicInfo.xml"))  # noqa: S314 - our own
    assert info.tag == "ComicInfo"
    assert info.findtext("Title") == "The Long Night"
    assert info.findtext("Series") == "The Long Night"
    assert info.findtext("Writer") == "A. Writer"
    assert info.findtext("PageCount") == str(len(pages))
    assert info.findtext("LanguageISO") == "en"
    page_elements = info.findall("Pages/Page")
    assert [p.get("Image") for p in page_elements] == [str(i) for i in range(len(pages))]
    assert page_elements[0].get("Type") == "FrontCover"
    assert {p.get("Type") for p in page_elements[1:]} == {"Story"}
    assert page_elements[1].get("ImageWidth") == str(PAGE[0])
    assert page_elements[1].get("ImageSize") == str(len(pages[1]))
    # The schema's element order: Title, Series, ..., Writer, ..., PageCount, LanguageISO, Pages
    order = [child.tag for child in info]
    assert order == ["Title", "Series", "Writer", "PageCount", "LanguageISO", "Pages"]


def test_comic_info_escapes_text_and_leaves_out_a_missing_writer() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    xml = comic_info_xml(ComicMetadata(title="Tom & Jerry <3", series="S"), [buf.getvalue()])
    info = ElementTree.fromstring(xml)  # noqa: S314 - our own output
    assert info.findtext("Title") == "Tom & Jerry <3"
    assert info.find("Writer") is None
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")


def test_cbz_and_pdf_stream_to_files(pages: list[bytes], tmp_path: Path) -> None:
    meta = ComicMetadata(title="T")
    with (tmp_path / "c.cbz").open("wb") as out:
        assert write_cbz(iter(pages), meta, out) == len(pages)
    assert (tmp_path / "c.cbz").read_bytes() == build_cbz(pages, meta)
    with (tmp_path / "c.pdf").open("wb") as out:
        write_pdf(iter(pages), len(pages), out, title="T")
    assert (tmp_path / "c.pdf").read_bytes() == build_pdf(pages, title="T")
    with pytest.raises(PackagingError, match="2 pages given, 3 announced"):
        write_pdf(iter(pages[:2]), 3, io.BytesIO())


def test_cbz_is_deterministic_and_refuses_nothing(pages: list[bytes]) -> None:
    meta = ComicMetadata(title="T")
    assert build_cbz(pages, meta) == build_cbz(pages, meta)
    with pytest.raises(PackagingError, match="no pages to put in the CBZ"):
        build_cbz([], meta)


# --- stopping -------------------------------------------------------------------------


def _stop_after(items: list[bytes], count: int, flag: StopFlag) -> Iterator[bytes]:
    """The items, setting ``flag`` once ``count`` of them have been handed out."""
    for i, item in enumerate(items):
        if i == count:
            flag.set("the job timed out")
        yield item


def test_composing_and_packaging_stop_at_the_next_page_once_asked(pages: list[bytes]) -> None:
    flag = StopFlag()
    with cancellation.watching(flag):
        composing = iter_pages(
            rendered(panels_for({1: 5, 2: 3})), page_width=PAGE[0], page_height=PAGE[1]
        )
        next(composing)
        flag.set("the job timed out")
        with pytest.raises(Cancelled, match="stopped: the job timed out"):
            next(composing)

    def pdf(stream: Iterator[bytes]) -> None:
        write_pdf(stream, len(pages), io.BytesIO())

    def cbz(stream: Iterator[bytes]) -> None:
        write_cbz(stream, ComicMetadata(title="The Long Night"), io.BytesIO())

    for package in (pdf, cbz):
        flag = StopFlag()
        with cancellation.watching(flag), pytest.raises(Cancelled):
            package(_stop_after(pages, 1, flag))

    flag = StopFlag()
    flag.set("the worker is shutting down")
    with cancellation.watching(flag), pytest.raises(Cancelled):
        segment("Chapter 1\n\nThe ship came in.")
