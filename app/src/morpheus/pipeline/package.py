"""Packaging of composed pages: a PDF and a CBZ (with ComicInfo.xml).

The PDF embeds each page's PNG image data losslessly (PDF's Flate filter with PNG
predictors reads a PNG's IDAT stream as it is), one page at a time, so a long comic does
not need every page decoded in memory. Both outputs are deterministic: the same pages
and metadata give the same bytes. Both check the stop flag (:mod:`morpheus.cancellation`)
before every page.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from xml.etree import ElementTree

from PIL import Image

from morpheus import cancellation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAGE_DPI = 150
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--, when unpacked


class PackagingError(ValueError):
    """The pages cannot be packaged (not PNG images, or none at all)."""


@dataclass(frozen=True)
class ComicMetadata:
    title: str
    series: str | None = None
    writer: str | None = None
    language_iso: str = "en"
    summary: str | None = None
    number: str | None = None


@dataclass(frozen=True)
class _PngData:
    width: int
    height: int
    colors: int
    idat: bytes


def png_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PackagingError("a page is not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _png_data(data: bytes) -> _PngData:
    """The image data of an 8-bit, non-interlaced RGB or grey PNG, re-encoded if needed."""
    width, height = png_size(data)
    bit_depth, colour_type, _comp, _filter, interlace = data[24:29]
    if bit_depth != 8 or colour_type not in (0, 2) or interlace != 0:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return _png_data(buf.getvalue())
    chunks: list[bytes] = []
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    if not chunks:
        raise PackagingError("a page PNG has no image data")
    return _PngData(width, height, 3 if colour_type == 2 else 1, b"".join(chunks))


def _pdf_string(text: str) -> bytes:
    try:
        raw = text.encode("latin-1")
        escaped = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        return b"(" + escaped + b")"
    except UnicodeEncodeError:
        return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def write_pdf(
    pages: Iterable[bytes],
    page_total: int,
    out: BinaryIO,
    *,
    title: str | None = None,
    author: str | None = None,
) -> None:
    """Stream a PDF of ``page_total`` PNG pages to ``out``."""
    if page_total < 1:
        raise PackagingError("there are no pages to put in the PDF")
    offsets: dict[int, int] = {}
    written = 0

    def emit(data: bytes) -> None:
        nonlocal written
        out.write(data)
        written += len(data)

    def obj(number: int, body: bytes, stream: bytes | None = None) -> None:
        offsets[number] = written
        emit(b"%d 0 obj\n" % number + body)
        if stream is not None:
            emit(b"\nstream\n" + stream + b"\nendstream")
        emit(b"\nendobj\n")

    emit(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    kids = b" ".join(b"%d 0 R" % (4 + 3 * i) for i in range(page_total))
    obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    obj(2, b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % page_total)
    info = b"<< /Producer (Morpheus)"
    if title:
        info += b" /Title " + _pdf_string(title)
    if author:
        info += b" /Author " + _pdf_string(author)
    obj(3, info + b" >>")
    count = 0
    for i, data in enumerate(pages):
        cancellation.check()
        if i >= page_total:
            raise PackagingError(f"more pages than the {page_total} announced")
        png = _png_data(data)
        pw, ph = png.width * 72 / PAGE_DPI, png.height * 72 / PAGE_DPI
        page_no, content_no, image_no = 4 + 3 * i, 5 + 3 * i, 6 + 3 * i
        obj(
            page_no,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] "
            b"/Resources << /XObject << /Im0 %d 0 R >> >> /Contents %d 0 R >>"
            % (pw, ph, image_no, content_no),
        )
        content = b"q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q" % (pw, ph)
        obj(content_no, b"<< /Length %d >>" % len(content), content)
        colour_space = b"/DeviceRGB" if png.colors == 3 else b"/DeviceGray"
        obj(
            image_no,
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d "
            b"/ColorSpace %s /BitsPerComponent 8 /Filter /FlateDecode "
            b"/DecodeParms << /Predictor 15 /Colors %d /BitsPerComponent 8 /Columns %d >> "
            b"/Length %d >>"
            % (png.width, png.height, colour_space, png.colors, png.width, len(png.idat)),
            png.idat,
        )
        count += 1
    if count != page_total:
        raise PackagingError(f"{count} pages given, {page_total} announced")
    xref_at = written
    last = 3 + 3 * page_total
    emit(b"xref\n0 %d\n0000000000 65535 f \n" % (last + 1))
    for number in range(1, last + 1):
        emit(b"%010d 00000 n \n" % offsets[number])
    emit(
        b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (last + 1, xref_at)
    )


def build_pdf(
    pages: Sequence[bytes], *, title: str | None = None, author: str | None = None
) -> bytes:
    """A PDF with one page per PNG, at 150 dpi (A4 pages for 1240x1754 images)."""
    buf = io.BytesIO()
    write_pdf(pages, len(pages), buf, title=title, author=author)
    return buf.getvalue()


def comic_info_xml(metadata: ComicMetadata, pages: Sequence[bytes]) -> bytes:
    """ComicInfo.xml (the ComicRack schema, v2.0 element order) for these pages."""
    return _comic_info(metadata, [(*png_size(data), len(data)) for data in pages])


def _comic_info(metadata: ComicMetadata, pages: Sequence[tuple[int, int, int]]) -> bytes:
    """ComicInfo.xml from (width, height, bytes) of each page."""
    root = ElementTree.Element(
        "ComicInfo",
        {
            "xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        },
    )

    def add(tag: str, value: str | None) -> None:
        if value:
            ElementTree.SubElement(root, tag).text = value

    add("Title", metadata.title)
    add("Series", metadata.series or metadata.title)
    add("Number", metadata.number)
    add("Summary", metadata.summary)
    add("Writer", metadata.writer)
    add("PageCount", str(len(pages)))
    add("LanguageISO", metadata.language_iso)
    pages_el = ElementTree.SubElement(root, "Pages")
    for i, (width, height, size) in enumerate(pages):
        ElementTree.SubElement(
            pages_el,
            "Page",
            {
                "Image": str(i),
                "Type": "FrontCover" if i == 0 else "Story",
                "ImageSize": str(size),
                "ImageWidth": str(width),
                "ImageHeight": str(height),
            },
        )
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def page_name(index: int) -> str:
    return f"page_{index + 1:04d}.png"


def write_cbz(pages: Iterable[bytes], metadata: ComicMetadata, out: BinaryIO) -> int:
    """Stream a CBZ to ``out``: the pages (stored: PNG is already compressed), then
    ComicInfo.xml. Returns the number of pages."""
    infos: list[tuple[int, int, int]] = []
    with zipfile.ZipFile(out, "w") as archive:
        for i, data in enumerate(pages):
            cancellation.check()
            infos.append((*png_size(data), len(data)))
            info = zipfile.ZipInfo(page_name(i), date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = _FILE_MODE
            archive.writestr(info, data)
        if not infos:
            raise PackagingError("there are no pages to put in the CBZ")
        info = zipfile.ZipInfo("ComicInfo.xml", date_time=_ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = _FILE_MODE
        archive.writestr(info, _comic_info(metadata, infos))
    return len(infos)


def build_cbz(pages: Sequence[bytes], metadata: ComicMetadata) -> bytes:
    """A CBZ of the pages with ComicInfo.xml, as bytes."""
    if not pages:
        raise PackagingError("there are no pages to put in the CBZ")
    buf = io.BytesIO()
    write_cbz(pages, metadata, buf)
    return buf.getvalue()
