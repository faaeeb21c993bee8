"""Ingest: text, Markdown and EPUB uploads become plain text; everything else is refused
with a status and a message a person understands."""

from __future__ import annotations

import io
import zipfile

import pytest
from morpheus.pipeline.ingest import NovelRejected, extract_text, word_count
from morpheus.pipeline.segment import segment

MAX = 1024 * 1024

CONTAINER = b"""<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>"""


def _opf(items: list[tuple[str, str]], spine: list[str]) -> bytes:
    manifest = "".join(
        f'<item id="{i}" href="{href}" media-type="application/xhtml+xml"/>' for i, href in items
    )
    refs = "".join(f'<itemref idref="{i}"/>' for i in spine)
    return (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        f"<metadata/><manifest>{manifest}</manifest><spine>{refs}</spine></package>"
    ).encode()


def _xhtml(title: str, *paragraphs: str) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title>ignored head title</title><style>p { color: red }</style></head>"
        f"<body><h1>{title}</h1>{body}<script>var x = 1;</script></body></html>"
    ).encode()


def make_epub(files: dict[str, bytes], *, mimetype: bool = True) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if mimetype:
            archive.writestr("mimetype", "application/epub+zip")
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def good_epub() -> bytes:
    return make_epub(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": _opf(
                [("c1", "chapter%201.xhtml"), ("c2", "text/ch2.xhtml")], ["c1", "c2"]
            ),
            "OEBPS/chapter 1.xhtml": _xhtml(
                "Chapter One",
                "It was &amp; always had been <em>dark</em>.",
                "&#8220;Hello,&#8221; said Anna.",
            ),
            "OEBPS/text/ch2.xhtml": _xhtml("Chapter Two", "Morning came.", "Tom woke up."),
        }
    )


# --- success table ----------------------------------------------------------------------

SUCCESS = [
    pytest.param(b"Once upon a time.", "novel.txt", "text/plain", "Once upon a time.", id="txt"),
    pytest.param(b"\xef\xbb\xbfWith a BOM.", "novel.txt", None, "With a BOM.", id="utf8-bom"),
    pytest.param(
        "Caf\u00e9 au lait.".encode("utf-16"),
        "novel.txt",
        None,
        "Caf\u00e9 au lait.",
        id="utf16-bom",
    ),
    pytest.param(b"Line one.\r\nLine two.", None, None, "Line one.\nLine two.", id="no-name-crlf"),
    pytest.param(
        b"# Chapter 1\n\nShe was **very** _tired_ of [links](http://x).",
        "book.md",
        "text/markdown",
        "# Chapter 1\n\nShe was very tired of links.",
        id="markdown",
    ),
    pytest.param(
        b"Before.\n\n***\n\nAfter.",
        "book.md",
        None,
        "Before.\n\n* * *\n\nAfter.",
        id="markdown-scene-break",
    ),
]


@pytest.mark.parametrize(("data", "filename", "ctype", "expected"), SUCCESS)
def test_extract_text_success(
    data: bytes, filename: str | None, ctype: str | None, expected: str
) -> None:
    assert extract_text(data, filename, ctype, MAX) == expected + "\n"


def test_epub_text_keeps_headings_and_strips_markup() -> None:
    text = extract_text(good_epub(), "novel.epub", "application/epub+zip", MAX)
    assert "# Chapter One" in text
    assert "# Chapter Two" in text
    assert "It was & always had been dark." in text
    assert "\u201cHello,\u201d said Anna." in text
    for noise in ("<", "var x", "color: red", "ignored head title"):
        assert noise not in text
    assert text.index("Chapter One") < text.index("Chapter Two")  # spine order


def test_epub_skips_non_linear_spine_items() -> None:
    opf = _opf([("c1", "c1.xhtml"), ("notes", "notes.xhtml")], ["c1", "notes"]).replace(
        b'<itemref idref="notes"/>', b'<itemref idref="notes" linear="no"/>'
    )
    epub = make_epub(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": opf,
            "OEBPS/c1.xhtml": _xhtml("Chapter One", "The story."),
            "OEBPS/notes.xhtml": _xhtml("Notes", "A footnote."),
        }
    )
    text = extract_text(epub, "n.epub", None, MAX)
    assert "The story." in text
    assert "A footnote." not in text


def test_epub_found_by_content_type_without_a_suffix() -> None:
    text = extract_text(good_epub(), None, "application/epub+zip", MAX)
    assert "Tom woke up." in text


def test_epub_segments_into_its_chapters() -> None:
    script = segment(extract_text(good_epub(), "novel.epub", None, MAX))
    assert [c.title for c in script.chapters] == ["Chapter One", "Chapter Two"]
    balloons = [b for p in script.panels() for b in p.balloons]
    assert balloons[0].speaker == "Anna"
    assert balloons[0].text == "Hello."


def test_word_count() -> None:
    assert word_count("one two\nthree  four\n") == 4


# --- failure table ----------------------------------------------------------------------


def _epub_without(name: str) -> bytes:
    files = {
        "META-INF/container.xml": CONTAINER,
        "OEBPS/content.opf": _opf([("c1", "c1.xhtml")], ["c1"]),
        "OEBPS/c1.xhtml": _xhtml("Chapter One", "Text."),
    }
    del files[name]
    return make_epub(files)


FAILURES = [
    pytest.param(
        b"x" * (MAX + 1), "big.txt", 413, "largest novel we accept is 1.0 MiB", id="too-large"
    ),
    pytest.param(b"", "empty.txt", 422, "The file is empty", id="empty"),
    pytest.param(b"  \n\t\n ", "blank.txt", 422, "The file is empty", id="whitespace"),
    pytest.param(b"1234 --- 5678", "digits.txt", 422, "contains no text", id="no-letters"),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "image.txt",
        422,
        "looks like a binary file",
        id="binary-nul",
    ),
    pytest.param(
        bytes(range(1, 32)) * 50 + b"abc",
        "ctrl.txt",
        422,
        "looks like a binary file",
        id="binary-controls",
    ),
    pytest.param(
        b"caf\xe9 cr\xe8me",
        "latin1.txt",
        422,
        "not valid UTF-8 (bad byte at position 3)",
        id="undecodable",
    ),
    pytest.param(
        b"%PDF-1.4",
        "novel.pdf",
        422,
        "Files of type '.pdf' are not supported",
        id="unsupported-type",
    ),
    pytest.param(
        b"not a zip at all", "novel.epub", 422, "it is not a ZIP archive", id="epub-not-zip"
    ),
    pytest.param(
        _epub_without("META-INF/container.xml"),
        "n.epub",
        422,
        "the file 'META-INF/container.xml' it refers to is missing",
        id="epub-no-container",
    ),
    pytest.param(
        _epub_without("OEBPS/content.opf"),
        "n.epub",
        422,
        "the file 'OEBPS/content.opf' it refers to is missing",
        id="epub-no-opf",
    ),
    pytest.param(
        _epub_without("OEBPS/c1.xhtml"),
        "n.epub",
        422,
        "the file 'OEBPS/c1.xhtml' it refers to is missing",
        id="epub-missing-chapter",
    ),
    pytest.param(
        make_epub({"META-INF/container.xml": b"<container><rootfiles>"}),
        "n.epub",
        422,
        "META-INF/container.xml is not well-formed XML",
        id="epub-broken-xml",
    ),
    pytest.param(
        make_epub({"META-INF/container.xml": CONTAINER, "OEBPS/content.opf": _opf([], [])}),
        "n.epub",
        422,
        "has no reading order (spine)",
        id="epub-no-spine",
    ),
    pytest.param(
        make_epub({"META-INF/container.xml": CONTAINER, "OEBPS/content.opf": _opf([], ["ghost"])}),
        "n.epub",
        422,
        "names 'ghost', which is not in the manifest",
        id="epub-spine-ghost",
    ),
    pytest.param(
        make_epub(
            {
                "META-INF/container.xml": b'<?xml version="1.0"?><!DOCTYPE x '
                b'[<!ENTITY a "aaaa">]><container>&a;</container>'
            }
        ),
        "n.epub",
        422,
        "declares XML entities",
        id="epub-entities",
    ),
    pytest.param(
        make_epub(
            {
                "META-INF/container.xml": CONTAINER,
                "OEBPS/content.opf": _opf([("c1", "c1.xhtml")], ["c1"]),
                "OEBPS/c1.xhtml": b"<html><body><p>  </p></body></html>",
            }
        ),
        "n.epub",
        422,
        "The EPUB contains no readable text",
        id="epub-no-text",
    ),
]


@pytest.mark.parametrize(("data", "filename", "status", "message"), FAILURES)
def test_extract_text_failure(data: bytes, filename: str, status: int, message: str) -> None:
    with pytest.raises(NovelRejected) as caught:
        extract_text(data, filename, None, MAX)
    assert caught.value.status_code == status
    assert message in caught.value.message
    assert str(caught.value) == caught.value.message


def test_epub_that_unpacks_too_far_is_refused_as_too_large() -> None:
    bomb = make_epub({"META-INF/container.xml": CONTAINER, "big.txt": b"\0" * (2 * 1024 * 1024)})
    assert len(bomb) < 64 * 1024
    with pytest.raises(NovelRejected) as caught:
        extract_text(bomb, "bomb.epub", None, 64 * 1024)
    assert caught.value.status_code == 413
    assert "The EPUB unpacks to 2.0 MiB; the most we accept is 1.2 MiB" in caught.value.message
