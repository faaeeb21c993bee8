"""Constants and helpers shared by the API tests."""

from __future__ import annotations

import io
import re
import zipfile

import httpx
from fastapi import FastAPI

API = "http://api.morpheus.localhost"
SHOP = "http://morpheus.localhost"
DESK = "http://dashboard.morpheus.localhost"
# An address outside trusted_proxies (TEST-NET-3): what an ordinary client looks like.
CLIENT_ADDR = "203.0.113.7"
TEST_PASSWORD = "test-only-password-1234"

NOVEL = (
    "Chapter 1\n\nThe lighthouse keeper, Mara, climbed the stairs at dusk. "
    '"Is anyone there?" she called. The wind answered with salt and rain.\n\n'
    "Chapter 2\n\nAt dawn a boat came in. Tom jumped onto the pier. "
    '"We saw your light," he said. Mara smiled.\n'
)


def client_for(app: FastAPI, base_url: str, addr: str = CLIENT_ADDR) -> httpx.AsyncClient:
    """An httpx client calling the app in-process, as if from ``addr``."""
    transport = httpx.ASGITransport(app=app, client=(addr, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30)


FORM_TOKEN_RE = re.compile(r'name="form_token" value="([^"]+)"')


async def shop_form(
    shop: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """The storefront form's hidden fields, from a fresh page: its token fits the visitor
    cookie the page gave this client, as in a browser."""
    page = await shop.get("/", headers=headers)
    assert page.status_code == 200, page.text
    match = FORM_TOKEN_RE.search(page.text)
    assert match, "no form token in the page"
    return {"form_token": match[1]}


def make_epub(chapters: list[tuple[str, str]]) -> bytes:
    """A small, valid EPUB 3 with one XHTML file per (title, text) chapter."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as epub:
        epub.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        epub.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        items = "".join(
            f'<item id="c{i}" href="c{i}.xhtml" media-type="application/xhtml+xml"/>'
            for i in range(len(chapters))
        )
        spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
        epub.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
            'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            '<dc:identifier id="id">test</dc:identifier><dc:title>Test</dc:title>'
            "<dc:language>en</dc:language></metadata>"
            f"<manifest>{items}</manifest><spine>{spine}</spine></package>",
        )
        for i, (title, text) in enumerate(chapters):
            epub.writestr(
                f"OEBPS/c{i}.xhtml",
                '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                f"<title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>",
            )
    return buffer.getvalue()
