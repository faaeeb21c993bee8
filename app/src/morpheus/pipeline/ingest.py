"""Turn an uploaded novel (plain text, Markdown or EPUB) into plain text.

Everything that cannot become a novel is refused with :class:`NovelRejected`, which
carries an HTTP status (413 too large, 422 unusable), a message a person understands and,
when a limit was passed, the name of that limit (the setting that sets it).

An upload is small, but what it unpacks to need not be: every EPUB limit of
:class:`IngestLimits` is checked against the ZIP's central directory first and then again
while each member is decompressed, in bounded chunks, so a member whose header lies is
caught at the chunk that crosses the line. Every XML document (container, package
document, XHTML) is parsed with defusedxml: entity declarations, DTD internal subsets and
external references are refused whatever the document's encoding. These functions bound
memory and size; the caller bounds time (see ``morpheus.services.extraction``).
"""

from __future__ import annotations

import html.entities
import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

if TYPE_CHECKING:
    from morpheus.settings import Settings

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
EPUB_SUFFIX = ".epub"
EPUB_CONTENT_TYPE = "application/epub+zip"
EPUB_MAX_MEMBERS = 5000
# container.xml and the package document become element trees: they are kept small.
EPUB_MAX_PACKAGE_BYTES = 1024 * 1024
# Members that unpack to less than this are never refused for their compression ratio
# (a short file of blank lines compresses very well, and costs nothing).
EPUB_RATIO_FLOOR_BYTES = 1024 * 1024
# Decompression proceeds this many bytes at a time.
CHUNK_BYTES = 64 * 1024

MiB = 1024 * 1024


@dataclass(frozen=True)
class IngestLimits:
    """What an upload may weigh, unpack to and yield; each field is the setting of the same
    name (``MORPHEUS_MAX_UPLOAD_BYTES`` and so on)."""

    max_upload_bytes: int = 5 * MiB
    max_text_chars: int = 5_000_000
    epub_max_unpacked_bytes: int = 32 * MiB
    epub_max_member_bytes: int = 16 * MiB
    epub_max_compression_ratio: float = 100.0

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(
            max_upload_bytes=settings.max_upload_bytes,
            max_text_chars=settings.max_text_chars,
            epub_max_unpacked_bytes=settings.epub_max_unpacked_bytes,
            epub_max_member_bytes=settings.epub_max_member_bytes,
            epub_max_compression_ratio=settings.epub_max_compression_ratio,
        )


class NovelRejected(Exception):
    """The upload cannot be turned into a novel; ``limit`` names the limit it passed."""

    def __init__(self, status_code: int, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.limit = limit


def _human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def word_count(text: str) -> int:
    return len(text.split())


def extract_text(
    data: bytes, filename: str | None, content_type: str | None, limits: IngestLimits
) -> str:
    """Return the novel's text from an upload, or raise :class:`NovelRejected`."""
    if len(data) > limits.max_upload_bytes:
        raise NovelRejected(
            413,
            f"The file is {_human_size(len(data))}; the largest novel we accept is "
            f"{_human_size(limits.max_upload_bytes)}.",
            "max_upload_bytes",
        )
    name = (filename or "").strip().lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = posixpath.splitext(name)[1]
    if suffix == EPUB_SUFFIX or (not suffix and ctype == EPUB_CONTENT_TYPE):
        text = _epub_text(data, limits)
    elif suffix in TEXT_SUFFIXES or not suffix:
        text = _decode(data)
        _check_length(len(text), limits)
        if suffix in (".md", ".markdown") or ctype == "text/markdown":
            text = _strip_markdown(text)
    else:
        raise NovelRejected(
            422,
            f"Files of type '{suffix}' are not supported: upload the novel as a .txt, .md "
            "or .epub file.",
        )
    text = _normalise(text)
    _check_length(len(text), limits)
    if not any(ch.isalpha() for ch in text):
        raise NovelRejected(
            422, "The file contains no text: there is nothing to turn into a comic."
        )
    return text


def _text_too_long(limits: IngestLimits) -> NovelRejected:
    return NovelRejected(
        413,
        f"The novel's text is longer than the {limits.max_text_chars:,} characters we "
        "accept (the limit on a novel's length).",
        "max_text_chars",
    )


def _check_length(chars: int, limits: IngestLimits) -> None:
    if chars > limits.max_text_chars:
        raise _text_too_long(limits)


# --- plain text -------------------------------------------------------------------------


def _binary(detail: str = "") -> NovelRejected:
    return NovelRejected(
        422, f"This looks like a binary file, not text{detail}: upload the novel as plain text."
    )


def _decode(data: bytes) -> str:
    if not data.strip():
        raise NovelRejected(422, "The file is empty: there is nothing to turn into a comic.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise NovelRejected(
                422, "The file says it is UTF-16 text but could not be read as such."
            ) from None
    else:
        if b"\x00" in data[:8192]:
            raise _binary()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise NovelRejected(
                422,
                f"The text is not valid UTF-8 (bad byte at position {exc.start}): save the "
                "file as UTF-8 and upload it again.",
            ) from None
    # No NUL anywhere: PostgreSQL cannot store one, and no novel holds one.
    position = text.find("\x00")
    if position >= 0:
        raise _binary(f" (it holds a NUL character at position {position:,})")
    sample = text[:20000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if sample and controls / len(sample) > 0.01:
        raise _binary()
    return text


_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")


def _strip_markdown(text: str) -> str:
    lines: list[str] = []
    for line in text.split("\n"):
        if _MD_FENCE.match(line):
            continue
        stripped = line.strip()
        if re.fullmatch(r"(?:\*\s*){3,}|(?:-\s*){3,}|(?:_\s*){3,}", stripped):
            lines.append("* * *")
            continue
        line = re.sub(r"^\s{0,3}>\s?", "", line)
        line = _MD_IMAGE.sub(r"\1", line)
        line = _MD_LINK.sub(r"\1", line)
        line = _MD_EMPHASIS.sub(r"\2", line)
        line = _HTML_TAG.sub("", line)
        lines.append(line)
    return "\n".join(lines)


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    text = text.replace("\u00a0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip() + "\n"


# --- EPUB -------------------------------------------------------------------------------

_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
}
_XHTML_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")
# An EPUB (OCF) container may only store or deflate its files.
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# XHTML 1.1 documents may use HTML's named character references (&nbsp;, &mdash;).
_HTML_ENTITIES = {name: chr(code) for name, code in html.entities.name2codepoint.items()}


def _bad_epub(detail: str) -> NovelRejected:
    return NovelRejected(422, f"This is not a readable EPUB file: {detail}.")


class _SafeXMLParser(DefusedXMLParser):
    """defusedxml's parser: no entity declarations, no external references, and no DTD
    internal subset (a bare ``<!DOCTYPE html>`` or a public XHTML doctype is fine)."""

    def __init__(self, target: Any = None) -> None:
        super().__init__(target=target, forbid_dtd=True, forbid_entities=True)
        self.entity.update(_HTML_ENTITIES)

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if has_internal_subset:
            super().defused_start_doctype_decl(name, sysid, pubid, has_internal_subset)


class _Epub:
    """A ZIP archive read within the limits: every decompressed byte is counted."""

    def __init__(self, archive: zipfile.ZipFile, limits: IngestLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.members = {info.filename: info for info in archive.infolist()}
        self.unpacked = 0

    def _too_large_total(self, size: str) -> NovelRejected:
        return NovelRejected(
            413,
            f"The EPUB unpacks to {size}; the most we accept is "
            f"{_human_size(self.limits.epub_max_unpacked_bytes)} (the limit on an EPUB's "
            "unpacked size).",
            "epub_max_unpacked_bytes",
        )

    def _too_large_member(self, name: str, size: str) -> NovelRejected:
        return NovelRejected(
            413,
            f"The file '{name}' in the EPUB unpacks to {size}; the most we accept for one "
            f"file is {_human_size(self.limits.epub_max_member_bytes)} (the limit on a "
            "file's unpacked size).",
            "epub_max_member_bytes",
        )

    def _too_compressed(self, name: str) -> NovelRejected:
        ratio = self.limits.epub_max_compression_ratio
        return NovelRejected(
            422,
            f"This is not a readable EPUB file: '{name}' is compressed more than {ratio:g} "
            "to 1, which no novel is (the limit on the compression ratio).",
            "epub_max_compression_ratio",
        )

    def _over_ratio(self, unpacked: int, packed: int) -> bool:
        return (
            unpacked > EPUB_RATIO_FLOOR_BYTES
            and unpacked > self.limits.epub_max_compression_ratio * max(packed, 1)
        )

    def check_directory(self) -> None:
        """The limits against the sizes the central directory declares."""
        if len(self.members) > EPUB_MAX_MEMBERS:
            raise _bad_epub(f"it holds more than {EPUB_MAX_MEMBERS} files")
        declared = sum(info.file_size for info in self.members.values())
        if declared > self.limits.epub_max_unpacked_bytes:
            raise self._too_large_total(_human_size(declared))
        for name, info in self.members.items():
            if info.file_size > self.limits.epub_max_member_bytes:
                raise self._too_large_member(name, _human_size(info.file_size))
            if self._over_ratio(info.file_size, info.compress_size):
                raise self._too_compressed(name)

    def chunks(self, name: str, max_bytes: int | None = None) -> Iterator[bytes]:
        """The member's bytes, decompressed a chunk at a time, every limit enforced."""
        info = self.members.get(name)
        if info is None:
            raise _bad_epub(f"the file '{name}' it refers to is missing")
        if info.compress_type not in _COMPRESSIONS:
            raise _bad_epub(f"'{name}' uses a compression method EPUB does not allow")
        limit = self.limits.epub_max_member_bytes
        if max_bytes is not None and max_bytes < limit:
            limit = max_bytes
        produced = 0
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(CHUNK_BYTES):
                    produced += len(chunk)
                    self.unpacked += len(chunk)
                    if produced > limit:
                        if limit < self.limits.epub_max_member_bytes:
                            raise _bad_epub(
                                f"'{name}' is larger than the {_human_size(limit)} a "
                                "package document may have"
                            )
                        raise self._too_large_member(name, f"more than {_human_size(limit)}")
                    if self.unpacked > self.limits.epub_max_unpacked_bytes:
                        raise self._too_large_total(
                            f"more than {_human_size(self.limits.epub_max_unpacked_bytes)}"
                        )
                    if self._over_ratio(produced, info.compress_size):
                        raise self._too_compressed(name)
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError) as exc:
            raise _bad_epub(f"'{name}' is damaged ({exc})") from None

    def parse(self, name: str, target: Any = None, max_bytes: int | None = None) -> Any:
        """Feed the member to a defused XML parser; return what its target returns."""
        parser = _SafeXMLParser(target=target)
        try:
            for chunk in self.chunks(name, max_bytes):
                parser.feed(chunk)
            return parser.close()
        except DefusedXmlException:
            raise _bad_epub(
                f"{name} declares XML entities or a DTD, which we do not accept"
            ) from None
        except ParseError as exc:
            raise _bad_epub(f"{name} is not well-formed XML ({exc})") from None
        except (ValueError, LookupError) as exc:  # an encoding expat cannot read
            raise _bad_epub(f"{name} cannot be read ({exc})") from None


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise _bad_epub("it is not a ZIP archive (an EPUB is one)") from None
    except (UnicodeDecodeError, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise _bad_epub(f"its table of contents is damaged ({exc})") from None


def _package(epub: _Epub, name: str) -> Element:
    root: Element = epub.parse(name, max_bytes=EPUB_MAX_PACKAGE_BYTES)
    return root


def _epub_text(data: bytes, limits: IngestLimits) -> str:
    with _open_zip(data) as archive:
        epub = _Epub(archive, limits)
        epub.check_directory()
        container = _package(epub, "META-INF/container.xml")
        rootfile = container.find(".//c:rootfile", _NS)
        if rootfile is None or not rootfile.get("full-path"):
            raise _bad_epub("META-INF/container.xml names no package document")
        opf_path = rootfile.get("full-path", "")
        opf = _package(epub, opf_path)
        base = posixpath.dirname(opf_path)
        manifest: dict[str, tuple[str, str]] = {}
        for item in opf.findall(".//opf:manifest/opf:item", _NS):
            item_id, href = item.get("id"), item.get("href")
            if item_id and href:
                path = posixpath.normpath(posixpath.join(base, unquote(href.split("#")[0])))
                manifest[item_id] = (path, item.get("media-type", ""))
        # Items marked linear="no" (notes, pop-ups) are not part of the reading order.
        spine = [
            ref.get("idref", "")
            for ref in opf.findall(".//opf:spine/opf:itemref", _NS)
            if ref.get("linear", "yes") != "no"
        ]
        if not spine:
            raise _bad_epub("its package document has no reading order (spine)")
        budget = _TextBudget(limits)
        parts: list[str] = []
        read: set[str] = set()
        for idref in spine:
            if idref not in manifest:
                raise _bad_epub(f"the reading order names '{idref}', which is not in the manifest")
            path, media_type = manifest[idref]
            if (media_type and media_type not in _XHTML_TYPES) or path in read:
                continue
            read.add(path)
            parts.append(epub.parse(path, _XHTMLText(budget)))
    text = "\n\n".join(part for part in parts if part.strip())
    if not text.strip():
        raise NovelRejected(422, "The EPUB contains no readable text.")
    return text


class _TextBudget:
    """Characters of text taken from the EPUB so far, refused past ``max_text_chars``."""

    def __init__(self, limits: IngestLimits) -> None:
        self.limits = limits
        self.used = 0

    def spend(self, chars: int) -> None:
        self.used += chars
        if self.used > self.limits.max_text_chars:
            raise _text_too_long(self.limits)


_BLOCK_TAGS = (
    "p div section article blockquote li ul ol br hr tr table pre figure figcaption "
    "aside header footer body"
)


class _XHTMLText:
    """An XML parser target that keeps an XHTML document's text, block by block.

    Headings h1 and h2 become Markdown headings (which segmentation reads as chapters);
    script, style, head and nav are skipped. Runs of white space become one space as the
    text arrives, so a document of blank space costs nothing.
    """

    _BLOCKS = frozenset(_BLOCK_TAGS.split())
    _HEADINGS = frozenset(("h1", "h2", "h3", "h4", "h5", "h6"))
    _SKIP = frozenset(("script", "style", "head", "title", "nav"))

    def __init__(self, budget: _TextBudget) -> None:
        self.budget = budget
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.heading: str | None = None

    @staticmethod
    def _local(tag: str) -> str:
        return tag.rpartition("}")[2].lower()

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        self.current = []
        if not text:
            return
        # Chapter headings become Markdown headings, which segmentation understands.
        self.blocks.append(f"# {text}" if self.heading in ("h1", "h2") else text)

    def _scene_break(self) -> None:
        self._flush()
        self.blocks.append("* * *")
        self.budget.spend(5)

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        name = self._local(tag)
        if name in self._SKIP:
            self.skip_depth += 1
        elif name in self._HEADINGS:
            self._flush()
            self.heading = name
        elif name == "br":
            self.current.append(" ")
        elif name == "hr":
            self._scene_break()
        elif name in self._BLOCKS:
            self._flush()

    def end(self, tag: str) -> None:
        name = self._local(tag)
        if name in self._SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif name in self._HEADINGS:
            self._flush()
            self.heading = None
        elif name in self._BLOCKS and name not in ("br", "hr"):
            self._flush()

    def data(self, data: str) -> None:
        if self.skip_depth:
            return
        piece = " ".join(data.split())
        if data[:1].isspace():
            piece = " " + piece
        if data[-1:].isspace() and piece != " ":
            piece += " "
        self.budget.spend(len(piece))
        self.current.append(piece)

    def close(self) -> str:
        self._flush()
        return "\n\n".join(self.blocks)
