"""What a simulated browser reads in the service's HTML: the forms' hidden tokens, the
links it follows, the images it loads and a comic's status badge.

Only the markup the templates promise is read (app/src/morpheus/templates): hidden
inputs by name, ``a[href]`` with ``rel``, ``img[src]``, ``span.badge badge-<status>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

COMIC_LINK = re.compile(r"^/comics/([0-9a-f-]{36})$")
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass
class Page:
    hidden: dict[str, str] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, rel)
    images: list[str] = field(default_factory=list)
    badges: list[str] = field(default_factory=list)

    def link(self, rel: str) -> str | None:
        return next((href for href, r in self.links if r == rel), None)

    def hrefs(self) -> list[str]:
        return [href for href, _ in self.links]

    @property
    def status(self) -> str | None:
        """A comic's status from its status page (``badge-<status>``)."""
        return self.badges[0] if self.badges else None

    def comic_ids(self) -> list[str]:
        """Ids of the comics a page links to (``/comics/<id>``), in order, once each."""
        found = [m.group(1) for href in self.hrefs() if (m := COMIC_LINK.match(href))]
        return list(dict.fromkeys(found))


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "input" and values.get("type") == "hidden" and values.get("name"):
            self.page.hidden[values["name"]] = values.get("value", "")
        elif tag == "a" and values.get("href"):
            self.page.links.append((values["href"], values.get("rel", "")))
        elif tag == "img" and values.get("src"):
            self.page.images.append(values["src"])
        elif tag == "span":
            classes = values.get("class", "").split()
            if "badge" in classes:
                self.page.badges += [c.removeprefix("badge-") for c in classes if c != "badge"]


def read_page(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.page
