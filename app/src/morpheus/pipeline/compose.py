"""Page composition: rendered panels laid out on A4-ish portrait comic pages.

Every chapter starts on a new page with its title in a banner. The number of panels on a
page varies in a fixed rhythm, and each count has its own layout (rows of one, two or
three panels), with margins, gutters and a page number. An optional title page comes
first. Pure and deterministic: the same panels give the same page bytes. Composing
checks the stop flag (:mod:`morpheus.cancellation`) before every page and panel.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageOps

from morpheus import cancellation
from morpheus.pipeline.script import Panel
from morpheus.providers.canvas import INK, PAPER, PNG_COMPRESS_LEVEL
from morpheus.providers.lettering import BALLOON_FONT, CAPTION_FONT, font

PAGE_WIDTH = 1240  # A4 at 150 dpi
PAGE_HEIGHT = 1754
PAGE_DPI = 150
# Panels are best rendered at this aspect ratio: the layouts below are built around it.
PANEL_WIDTH = 800
PANEL_HEIGHT = 600

# Panels per page, repeated through each chapter, and the rows each count is laid out in.
PAGE_RHYTHM: tuple[int, ...] = (5, 6, 3, 5, 6, 5, 3, 6)
# Lettering is drawn in proportion to the panel, so a panel shown too small has text too
# small to read: no layout may make a panel shorter than this fraction of the page
# (about 8 pt lettering for the local provider's panels).
MIN_CELL_FRACTION = 0.2
# For each panel count, the row layouts (panels per row, top to bottom) a page may use.
# The one that fills the page best for the panels' shape wins; ties rotate page by page.
LAYOUTS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((1,),),
    2: ((1, 1), (2,)),
    3: ((1, 2), (2, 1), (3,)),
    4: ((1, 3), (3, 1), (2, 2)),
    5: ((2, 1, 2), (1, 2, 2), (2, 2, 1), (3, 2)),
    6: ((1, 3, 2), (2, 1, 3), (3, 1, 2), (2, 2, 2)),
}


@dataclass(frozen=True)
class PagePlan:
    number: int  # printed page number (the title page is not numbered)
    chapter: int
    panel_indices: tuple[int, ...]  # indices into the composed panel list
    opens_chapter: bool


def plan_pages(panels: Sequence[Panel]) -> list[PagePlan]:
    """Decide which panels go on which page (without drawing anything)."""
    plans: list[PagePlan] = []
    i = 0
    while i < len(panels):
        chapter = panels[i].chapter
        end = i
        while end < len(panels) and panels[end].chapter == chapter:
            end += 1
        beat = 0
        first = True
        while i < end:
            take = min(PAGE_RHYTHM[beat % len(PAGE_RHYTHM)], end - i)
            if end - (i + take) == 1:  # never leave one panel alone on a chapter's last page
                take = take + 1 if take < max(LAYOUTS) else take - 1
            plans.append(
                PagePlan(
                    number=len(plans) + 1,
                    chapter=chapter,
                    panel_indices=tuple(range(i, i + take)),
                    opens_chapter=first,
                )
            )
            i += take
            beat += 1
            first = False
    return plans


def page_count(panels: Sequence[Panel], *, title: str | None = None) -> int:
    return len(plan_pages(panels)) + (1 if title else 0)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    return img.convert("RGB")


def _centred_text(
    draw: ImageDraw.ImageDraw,
    y: float,
    text: str,
    font_name: str,
    size: int,
    width: int,
    max_width: float,
    fill: tuple[int, int, int] = INK,
) -> float:
    """Draw ``text`` centred at ``y``, shrinking it to fit; return the next free y."""
    while size > 8:
        face = font(font_name, size)
        if face.getlength(text) <= max_width:
            break
        size -= 1
    face = font(font_name, size)
    draw.text(((width - face.getlength(text)) / 2, y), text, font=face, fill=fill)
    return y + size * 1.3


def _title_page(title: str, writer: str | None, cover: bytes | None, w: int, h: int) -> bytes:
    page = Image.new("RGB", (w, h), (250, 246, 236))
    draw = ImageDraw.Draw(page)
    m = round(w * 0.05)
    lw = max(2, round(w / 250))
    draw.rectangle((m, m, w - m, h - m), outline=INK, width=lw * 2)
    draw.rectangle((m + lw * 4, m + lw * 4, w - m - lw * 4, h - m - lw * 4), outline=INK, width=lw)
    y = h * 0.09
    words = title.split()
    lines: list[str] = []
    line = ""
    face = font(BALLOON_FONT, round(h * 0.05))
    for word in words:
        candidate = f"{line} {word}".strip()
        if line and face.getlength(candidate) > w * 0.78:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    for line in lines[:4]:
        y = _centred_text(draw, y, line, BALLOON_FONT, round(h * 0.05), w, w * 0.8)
    y += h * 0.02
    if cover is not None:
        art = _open(cover)
        box_w = round(w * 0.72)
        box_h = round(box_w * art.height / art.width)
        box_h = min(box_h, round(h * 0.5))
        art = ImageOps.fit(art, (box_w, box_h), method=Image.Resampling.LANCZOS)
        x0 = (w - box_w) // 2
        page.paste(art, (x0, round(y)))
        draw.rectangle((x0, round(y), x0 + box_w, round(y) + box_h), outline=INK, width=lw * 2)
        y += box_h + h * 0.04
    if writer:
        y = _centred_text(
            draw, y, f"after the novel by {writer}", CAPTION_FONT, round(h * 0.022), w, w * 0.8
        )
    _centred_text(
        draw,
        h * 0.88,
        "A Morpheus comic",
        CAPTION_FONT,
        round(h * 0.016),
        w,
        w * 0.8,
        fill=(90, 90, 90),
    )
    return _png(page)


def _row_heights(
    rows: Sequence[int], aspects: Sequence[float], inner_w: float, gutter: float
) -> list[float]:
    heights = []
    k = 0
    for per_row in rows:
        cell_w = (inner_w - (per_row - 1) * gutter) / per_row
        row_aspects = aspects[k : k + per_row]
        heights.append(cell_w / (sum(row_aspects) / len(row_aspects)))
        k += per_row
    return heights


def _fill(
    rows: Sequence[int],
    aspects: Sequence[float],
    inner_w: float,
    inner_h: float,
    gutter: float,
    min_cell_h: float = 0.0,
) -> float:
    """How well the layout uses the page: 1.0 is a full page, less is blank paper or
    panels shrunk to fit; below zero when a panel would be too small to read."""
    heights = _row_heights(rows, aspects, inner_w, gutter)
    natural = sum(heights)
    available = inner_h - (len(rows) - 1) * gutter
    scale = min(1.0, available / natural)
    if min(heights) * scale < min_cell_h:
        return -1.0 + min(heights) * scale / min_cell_h
    if natural <= available:
        return natural / available
    return scale**2  # shrunk in both directions


def choose_rows(
    count: int,
    aspects: Sequence[float],
    inner_w: float,
    inner_h: float,
    gutter: float,
    beat: int = 0,
    min_cell_h: float = 0.0,
) -> tuple[int, ...]:
    candidates = LAYOUTS.get(count) or (tuple([2] * (count // 2) + ([1] if count % 2 else [])),)
    ranked = sorted(
        range(len(candidates)),
        key=lambda i: (
            -round(_fill(candidates[i], aspects, inner_w, inner_h, gutter, min_cell_h), 2),
            (i - beat) % len(candidates),
        ),
    )
    return candidates[ranked[0]]


def _layout(
    rows: Sequence[int],
    aspects: Sequence[float],
    x0: float,
    y0: float,
    inner_w: float,
    inner_h: float,
    gutter: float,
) -> list[tuple[int, int, int, int]]:
    """Cell boxes (left, top, right, bottom) for the rows, panels keeping their shape."""
    row_heights = _row_heights(rows, aspects, inner_w, gutter)
    gutters = (len(rows) - 1) * gutter
    natural = sum(row_heights)
    available = inner_h - gutters
    scale = min(1.0, available / natural)
    used = natural * scale + gutters
    y = y0 + (inner_h - used) / 2
    boxes: list[tuple[int, int, int, int]] = []
    for per_row, row_h in zip(rows, row_heights, strict=True):
        h = row_h * scale
        cell_w = (inner_w - (per_row - 1) * gutter) / per_row * scale
        row_w = cell_w * per_row + gutter * (per_row - 1)
        x = x0 + (inner_w - row_w) / 2
        for _ in range(per_row):
            boxes.append((round(x), round(y), round(x + cell_w), round(y + h)))
            x += cell_w + gutter
        y += h + gutter
    return boxes


def _page(
    plan: PagePlan, panels: Sequence[tuple[Panel, bytes]], chapter_title: str | None, w: int, h: int
) -> bytes:
    page = Image.new("RGB", (w, h), PAPER)
    draw = ImageDraw.Draw(page)
    margin = round(w * 0.05)
    gutter = round(w * 0.016)
    lw = max(2, round(w / 300))
    top = margin
    if plan.opens_chapter and chapter_title:
        band_h = round(h * 0.045)
        draw.rectangle((margin, top, w - margin, top + band_h), fill=INK)
        size = round(band_h * 0.6)
        face = font(BALLOON_FONT, size)
        text = chapter_title
        while face.getlength(text) > w - 2 * margin - band_h and size > 8:
            size -= 1
            face = font(BALLOON_FONT, size)
        draw.text(
            ((w - face.getlength(text)) / 2, top + (band_h - size * 1.15) / 2),
            text,
            font=face,
            fill=PAPER,
        )
        top += band_h + gutter
    footer = round(h * 0.035)
    images = [_open(panels[i][1]) for i in plan.panel_indices]
    aspects = [img.width / img.height for img in images]
    inner_w, inner_h = w - 2 * margin, h - top - margin - footer
    rows = choose_rows(
        len(images),
        aspects,
        inner_w,
        inner_h,
        gutter,
        beat=plan.number,
        min_cell_h=h * MIN_CELL_FRACTION,
    )
    boxes = _layout(rows, aspects, margin, top, inner_w, inner_h, gutter)
    for img, (left, upper, right, lower) in zip(images, boxes, strict=True):
        cancellation.check()
        # Cells keep the panel's shape, so a plain resize (no crop) fits it exactly.
        cell = img.resize((right - left, lower - upper), Image.Resampling.BICUBIC, reducing_gap=2.0)
        page.paste(cell, (left, upper))
        draw.rectangle((left, upper, right, lower), outline=INK, width=lw)
    _centred_text(
        draw,
        h - margin - footer * 0.55,
        str(plan.number),
        CAPTION_FONT,
        round(footer * 0.5),
        w,
        w * 0.3,
        fill=(70, 70, 70),
    )
    return _png(page)


def iter_pages(
    panels: Sequence[tuple[Panel, bytes]],
    *,
    title: str | None = None,
    writer: str | None = None,
    chapter_titles: dict[int, str] | None = None,
    page_width: int = PAGE_WIDTH,
    page_height: int = PAGE_HEIGHT,
) -> Iterator[bytes]:
    """Yield the PNG pages one at a time (the title page first when ``title`` is given)."""
    chapter_titles = chapter_titles or {}
    if title:
        cancellation.check()
        yield _title_page(title, writer, panels[0][1] if panels else None, page_width, page_height)
    for plan in plan_pages([panel for panel, _ in panels]):
        cancellation.check()
        yield _page(plan, panels, chapter_titles.get(plan.chapter), page_width, page_height)


def compose_pages(
    panels: list[tuple[Panel, bytes]],
    *,
    title: str | None = None,
    writer: str | None = None,
    chapter_titles: dict[int, str] | None = None,
    page_width: int = PAGE_WIDTH,
    page_height: int = PAGE_HEIGHT,
) -> list[bytes]:
    """All pages as PNG bytes, in reading order."""
    return list(
        iter_pages(
            panels,
            title=title,
            writer=writer,
            chapter_titles=chapter_titles,
            page_width=page_width,
            page_height=page_height,
        )
    )
