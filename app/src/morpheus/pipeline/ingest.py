"""Turn an uploaded novel (plain text, Markdown or EPUB) into plain text.

Everything that cannot become a novel is refused with :class:`NovelRejected`, which
carries an HTTP status (413 too large, 422 unusable) and a message a person understands.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from html.parser import HTMLParser
from urllib.parse import unquote
from xml.etree import ElementTree

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown")
EPUB_SUFFIX = ".epub"
EPUB_CONTENT_TYPE = "application/epub+zip"
# An EPUB may unpack to this many times its packed size (text compresses well), bounded.
EPUB_MAX_EXPANSION = 20
EPUB_MAX_MEMBERS = 5000

_MIN_LETTERS = 1


class NovelRejected(Exception):
    """The upload cannot be turned into a novel."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.0f} KiB"
    return f"{n} bytes"


def word_count(text: str) -> int:
    return len(text.split())


def extract_text(
    data: bytes, filename: str | None, content_type: str | None, max_bytes: int
) -> str:
    """Return the novel's text from an upload, or raise :class:`NovelRejected`."""
    if len(data) > max_bytes:
        raise NovelRejected(
            413,
            f"The file is {_human_size(len(data))}; the largest novel we accept is "
            f"{_human_size(max_bytes)}.",
        )
    name = (filename or "").strip().lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = posixpath.splitext(name)[1]
    if suffix == EPUB_SUFFIX or (not suffix and ctype == EPUB_CONTENT_TYPE):
        text = _epub_text(data, max_bytes)
    elif suffix in TEXT_SUFFIXES or not suffix:
        text = _decode(data)
        if suffix in (".md", ".markdown") or ctype == "text/markdown":
            text = _strip_markdown(text)
    else:
        raise NovelRejected(
            422,
            f"Files of type '{suffix}' are not supported: upload the novel as a .txt, .md "
            "or .epub file.",
        )
    text = _normalise(text)
    if sum(ch.isalpha() for ch in text) < _MIN_LETTERS:
        raise NovelRejected(
            422, "The file contains no text: there is nothing to turn into a comic."
        )
    return text


# --- plain text -------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if not data.strip():
        raise NovelRejected(422, "The file is empty: there is nothing to turn into a comic.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise NovelRejected(
                422, "The file says it is UTF-16 text but could not be read as such."
            ) from None
    if b"\x00" in data[:8192]:
        raise NovelRejected(
            422, "This looks like a binary file, not text: upload the novel as plain text."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NovelRejected(
            422,
            f"The text is not valid UTF-8 (bad byte at position {exc.start}): save the file "
            "as UTF-8 and upload it again.",
        ) from None
    sample = text[:20000]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f")
    if sample and controls / len(sample) > 0.01:
        raise NovelRejected(
            422, "This looks like a binary file, not text: upload the novel as plain text."
        )
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


def _bad_epub(detail: str) -> NovelRejected:
    return NovelRejected(422, f"This is not a readable EPUB file: {detail}.")


def _parse_xml(raw: bytes, what: str) -> ElementTree.Element:
    if b"<!ENTITY" in raw:
        raise _bad_epub(f"{what} declares XML entities, which we do not accept")
    try:
        # Entity declarations are refused above; expat is not given external resources.
        return ElementTree.fromstring(raw)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise _bad_epub(f"{what} is not well-formed XML ({exc})") from None


def _epub_text(data: bytes, max_bytes: int) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise _bad_epub("it is not a ZIP archive (an EPUB is one)") from None
    with archive:
        members = archive.infolist()
        if len(members) > EPUB_MAX_MEMBERS:
            raise _bad_epub(f"it holds more than {EPUB_MAX_MEMBERS} files")
        unpacked = sum(info.file_size for info in members)
        limit = max_bytes * EPUB_MAX_EXPANSION
        if unpacked > limit:
            raise NovelRejected(
                413,
                f"The EPUB unpacks to {_human_size(unpacked)}; the most we accept is "
                f"{_human_size(limit)}.",
            )
        names = {info.filename for info in members}

        def read(name: str) -> bytes:
            if name not in names:
                raise _bad_epub(f"the file '{name}' it refers to is missing")
            try:
                return archive.read(name)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
                raise _bad_epub(f"'{name}' is damaged ({exc})") from None

        container = _parse_xml(read("META-INF/container.xml"), "META-INF/container.xml")
        rootfile = container.find(".//c:rootfile", _NS)
        if rootfile is None or not rootfile.get("full-path"):
            raise _bad_epub("META-INF/container.xml names no package document")
        opf_path = rootfile.get("full-path", "")
        opf = _parse_xml(read(opf_path), opf_path)
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
        parts: list[str] = []
        for idref in spine:
            if idref not in manifest:
                raise _bad_epub(f"the reading order names '{idref}', which is not in the manifest")
            path, media_type = manifest[idref]
            if media_type and media_type not in _XHTML_TYPES:
                continue
            raw = read(path)
            parts.append(_xhtml_text(raw))
    text = "\n\n".join(part for part in parts if part.strip())
    if not text.strip():
        raise NovelRejected(422, "The EPUB contains no readable text.")
    return text


_BLOCK_TAGS = (
    "p div section article blockquote li ul ol br hr tr table pre figure figcaption "
    "aside header footer body"
)


class _XHTMLText(HTMLParser):
    _BLOCKS = frozenset(_BLOCK_TAGS.split())
    _HEADINGS = frozenset(("h1", "h2", "h3", "h4", "h5", "h6"))
    _SKIP = frozenset(("script", "style", "head", "title", "nav"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.heading: str | None = None

    def _flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.current)).strip()
        self.current = []
        if not text:
            return
        # Chapter headings become Markdown headings, which segmentation understands.
        self.blocks.append(f"# {text}" if self.heading in ("h1", "h2") else text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip_depth += 1
        elif tag in self._HEADINGS:
            self._flush()
            self.heading = tag
        elif tag in self._BLOCKS:
            self._flush()
            if tag == "hr":
                self.blocks.append("* * *")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "hr":
            self._flush()
            self.blocks.append("* * *")
        elif tag == "br":
            self.current.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in self._HEADINGS:
            self._flush()
            self.heading = None
        elif tag in self._BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.current.append(data)


def _xhtml_text(raw: bytes) -> str:
    try:
        markup = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        markup = raw.decode("latin-1")
    parser = _XHTMLText()
    parser.feed(markup)
    parser.close()
    parser._flush()
    return "\n\n".join(parser.blocks)
