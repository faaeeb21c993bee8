"""Ingest: text, Markdown and EPUB uploads become plain text; everything else is refused
with a status and a message a person understands."""

from __future__ import annotations

import ast
import importlib.util
import io
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from morpheus.pipeline import ingest
from morpheus.pipeline.ingest import IngestLimits, NovelRejected, extract_text, word_count
from morpheus.pipeline.segment import segment

MAX = 1024 * 1024
LIMITS = IngestLimits(max_upload_bytes=MAX)

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
    assert extract_text(data, filename, ctype, LIMITS) == expected + "\n"


def test_epub_text_keeps_headings_and_strips_markup() -> None:
    text = extract_text(good_epub(), "novel.epub", "application/epub+zip", LIMITS)
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
    text = extract_text(epub, "n.epub", None, LIMITS)
    assert "The story." in text
    assert "A footnote." not in text


def test_epub_found_by_content_type_without_a_suffix() -> None:
    text = extract_text(good_epub(), None, "application/epub+zip", LIMITS)
    assert "Tom woke up." in text


def test_epub_segments_into_its_chapters() -> None:
    script = segment(extract_text(good_epub(), "novel.epub", None, LIMITS))
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
        extract_text(data, filename, None, LIMITS)
    assert caught.value.status_code == status
    assert message in caught.value.message
    assert str(caught.value) == caught.value.message


# --- hostile EPUBs ----------------------------------------------------------------------

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_epub.py"


def load_hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("morpheus_test_hostile_epub", HOSTILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostile = load_hostile()
# Limits that let a bomb through the ZIP's directory, to reach the later checks.
PERMISSIVE = IngestLimits(
    max_upload_bytes=MAX,
    epub_max_unpacked_bytes=1 << 40,
    epub_max_member_bytes=1 << 40,
    epub_max_compression_ratio=1e9,
)


def refusal(data: bytes, limits: IngestLimits = LIMITS) -> NovelRejected:
    with pytest.raises(NovelRejected) as caught:
        extract_text(data, "hostile.epub", None, limits)
    return caught.value


def test_markup_bomb_is_refused_by_its_unpacked_size() -> None:
    bomb = hostile.markup_bomb(95 * 1024 * 1024)
    assert len(bomb) < 512 * 1024
    rejected = refusal(bomb)
    assert (rejected.status_code, rejected.limit) == (413, "epub_max_unpacked_bytes")
    assert "The EPUB unpacks to 95.0 MiB; the most we accept is 32.0 MiB" in rejected.message
    assert "unpacked size" in rejected.message


def test_markup_bomb_is_refused_by_a_member_size() -> None:
    limits = IngestLimits(epub_max_member_bytes=4 * 1024 * 1024, epub_max_compression_ratio=1e9)
    rejected = refusal(hostile.markup_bomb(6 * 1024 * 1024), limits)
    assert (rejected.status_code, rejected.limit) == (413, "epub_max_member_bytes")
    assert "'OEBPS/c1.xhtml' in the EPUB unpacks to 6.0 MiB" in rejected.message


def test_markup_bomb_is_refused_by_its_text_length_while_parsing() -> None:
    limits = IngestLimits(
        max_text_chars=200_000,
        epub_max_unpacked_bytes=1 << 40,
        epub_max_member_bytes=1 << 40,
        epub_max_compression_ratio=1e9,
    )
    rejected = refusal(hostile.markup_bomb(8 * 1024 * 1024), limits)
    assert (rejected.status_code, rejected.limit) == (413, "max_text_chars")
    assert "longer than the 200,000 characters we accept" in rejected.message


def test_deflate_bomb_is_refused_by_its_compression_ratio() -> None:
    bomb = hostile.deflate_bomb(8 * 1024 * 1024)
    assert len(bomb) < 64 * 1024
    rejected = refusal(bomb)
    assert (rejected.status_code, rejected.limit) == (422, "epub_max_compression_ratio")
    assert "'OEBPS/images/cover.png' is compressed more than 100 to 1" in rejected.message


def test_limits_hold_while_decompressing_whatever_the_directory_says() -> None:
    """The directory's sizes are checked first, but every decompressed chunk counts too."""
    bomb = hostile.markup_bomb(8 * 1024 * 1024)
    cases = [
        (IngestLimits(epub_max_member_bytes=1024 * 1024), "epub_max_member_bytes", 413),
        (IngestLimits(epub_max_unpacked_bytes=1024 * 1024), "epub_max_unpacked_bytes", 413),
        (IngestLimits(epub_max_compression_ratio=2), "epub_max_compression_ratio", 422),
    ]
    for limits, limit, status in cases:
        with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
            epub = ingest._Epub(archive, limits)  # the directory is not consulted
            chunks = epub.chunks("OEBPS/c1.xhtml")
            with pytest.raises(NovelRejected) as caught:
                for _ in chunks:
                    # Never more than one chunk past the line.
                    assert epub.unpacked <= 2 * 1024 * 1024 + ingest.CHUNK_BYTES
        assert (caught.value.status_code, caught.value.limit) == (status, limit)


def test_a_directory_that_understates_a_size_is_not_believed() -> None:
    rejected = refusal(hostile.lying_epub(64 * 1024 * 1024, declared=1024), PERMISSIVE)
    assert rejected.status_code == 422
    assert "'OEBPS/c1.xhtml' is damaged" in rejected.message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le", "utf-8"])
@pytest.mark.parametrize("where", ["container", "package", "chapter"])
def test_entity_declarations_are_refused_in_any_document_and_encoding(
    where: str, encoding: str
) -> None:
    rejected = refusal(hostile.entity_epub(where, encoding))
    assert rejected.status_code == 422
    assert "declares XML entities or a DTD, which we do not accept" in rejected.message


def test_xhtml_doctypes_without_declarations_and_html_entities_are_read() -> None:
    chapter = (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
        b'"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">'
        b'<html xmlns="http://www.w3.org/1999/xhtml"><body><h1>One</h1>'
        b"<p>Caf&eacute;&nbsp;au&nbsp;lait &mdash; &#8220;yes&#8221;.</p><hr/><p>After.</p>"
        b"</body></html>"
    )
    epub = make_epub(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": _opf([("c1", "c1.xhtml")], ["c1"]),
            "OEBPS/c1.xhtml": chapter,
        }
    )
    text = extract_text(epub, "n.epub", None, LIMITS)
    assert text == "# One\n\nCaf\u00e9 au lait \u2014 \u201cyes\u201d.\n\n* * *\n\nAfter.\n"


def test_a_utf16_chapter_is_read() -> None:
    chapter = (
        '<?xml version="1.0" encoding="utf-16"?><html xmlns="http://www.w3.org/1999/xhtml">'
        "<body><p>Cr\u00e8me br\u00fbl\u00e9e.</p></body></html>"
    ).encode("utf-16")
    epub = make_epub(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": _opf([("c1", "c1.xhtml")], ["c1"]),
            "OEBPS/c1.xhtml": chapter,
        }
    )
    assert extract_text(epub, "n.epub", None, LIMITS) == "Cr\u00e8me br\u00fbl\u00e9e.\n"


def test_a_chapter_named_twice_in_the_reading_order_is_read_once() -> None:
    epub = make_epub(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": _opf([("c1", "c1.xhtml")], ["c1"] * 1000),
            "OEBPS/c1.xhtml": _xhtml("Chapter One", "Only once."),
        }
    )
    assert extract_text(epub, "n.epub", None, LIMITS).count("Only once.") == 1


def test_a_package_document_is_kept_small() -> None:
    items = [(f"c{i}", f"c{i}.xhtml") for i in range(30_000)]
    epub = make_epub(
        {
            "META-INF/container.xml": CONTAINER,
            "OEBPS/content.opf": _opf(items, ["c0"]),
            "OEBPS/c0.xhtml": _xhtml("Chapter One", "Text."),
        }
    )
    rejected = refusal(epub)
    assert rejected.status_code == 422
    assert "'OEBPS/content.opf' is larger than the 1.0 MiB" in rejected.message


def test_other_compression_methods_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/container.xml", CONTAINER, compress_type=zipfile.ZIP_BZIP2)
    rejected = refusal(buffer.getvalue())
    assert rejected.status_code == 422
    assert "uses a compression method EPUB does not allow" in rejected.message


def test_a_zip_with_undecodable_names_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/caf\u00e9.xml", "x")
    data = buffer.getvalue().replace("caf\u00e9".encode(), b"caf\xff\xfe")
    rejected = refusal(data)
    assert rejected.status_code == 422
    assert "not a readable EPUB" in rejected.message


# --- characters PostgreSQL cannot store ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        pytest.param(b"Once upon a time. " * 1000 + b"\x00 and after.", "n.txt", id="late-nul"),
        pytest.param(
            ("Once upon a time. " * 1000 + "\x00").encode("utf-16"), "n.txt", id="utf16-nul"
        ),
        pytest.param(b"# Title\n\n" + b"Text. " * 2000 + b"\x00", "n.md", id="markdown-nul"),
    ],
)
def test_a_nul_anywhere_in_text_is_refused(data: bytes, filename: str) -> None:
    with pytest.raises(NovelRejected) as caught:
        extract_text(data, filename, None, LIMITS)
    assert caught.value.status_code == 422
    assert "NUL character at position" in caught.value.message


def test_text_longer_than_the_limit_is_refused() -> None:
    limits = IngestLimits(max_text_chars=1000)
    with pytest.raises(NovelRejected) as caught:
        extract_text(b"word " * 1000, "n.txt", None, limits)
    assert (caught.value.status_code, caught.value.limit) == (413, "max_text_chars")


# --- no XML parser but defusedxml's ---------------------------------------------------------

SOURCE = Path(ingest.__file__).resolve().parents[1]
XML_PARSING_MODULES = ("xml.dom", "xml.sax", "xml.parsers", "html.parser", "lxml", "pyexpat")
XML_PARSERS = {"XML", "XMLParser", "XMLPullParser", "fromstring", "iterparse", "parse"}


def test_the_service_parses_xml_only_with_defusedxml() -> None:
    """ElementTree may build XML (the CBZ's ComicInfo.xml) but never read it."""
    found: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SOURCE)}:{getattr(node, 'lineno', 0)}"
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
                if node.module == "xml.etree.ElementTree":
                    found += [f"{where} {a.name}" for a in node.names if a.name in XML_PARSERS]
            found += [f"{where} {m}" for m in modules if m.startswith(XML_PARSING_MODULES)]
            if (
                isinstance(node, ast.Attribute)
                and node.attr in XML_PARSERS
                and isinstance(node.value, ast.Name)
                and node.value.id in ("ElementTree", "ET", "etree")
            ):
                found.append(f"{where} {node.value.id}.{node.attr}")
    assert found == []
