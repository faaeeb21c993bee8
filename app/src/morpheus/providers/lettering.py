"""Lettering: a panel's caption box and its speech balloons, with tails pointing at the
speakers, the text fitted to its box in the bundled DejaVu fonts.

Both providers letter their panels here: the local one on the art it draws, the RunPod
one on the art it gets back, so the text in a panel is always exactly the novel's, crisp
and readable. Page composition uses the same fonts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from morpheus.pipeline.script import Panel
from morpheus.providers.canvas import INK, PAPER, Color, Draw
from morpheus.providers.layout import figure_layout

FONT_DIR = Path(__file__).resolve().parent.parent / "fonts"
CAPTION_FONT = "DejaVuSans.ttf"
BALLOON_FONT = "DejaVuSansCondensed-Bold.ttf"
MIN_FONT_PX = 7

CAPTION_FILL: Color = (255, 236, 160)


@lru_cache(maxsize=64)
def font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / name), size)


def _wrap(text: str, face: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and face.getlength(candidate) > max_width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def _fit(
    text: str, font_name: str, size: int, max_width: float, max_height: float
) -> tuple[ImageFont.FreeTypeFont, list[str], float, float]:
    """Largest font size (from ``size`` down) whose wrapped text fits the box."""
    while True:
        face = font(font_name, size)
        lines = _wrap(text, face, max_width)
        line_h = size * 1.18
        widest = max((face.getlength(line) for line in lines), default=0.0)
        if (widest <= max_width and line_h * len(lines) <= max_height) or size <= MIN_FONT_PX:
            return face, lines, widest, line_h * len(lines)
        size -= 1


def _caption(draw: ImageDraw.ImageDraw, text: str, w: int, h: int, full_width: bool) -> float:
    """Draw the caption box at the top left; return its bottom edge."""
    margin = max(3, round(min(w, h) * 0.03))
    pad = max(3, round(h * 0.018))
    max_w = (w * (0.94 if full_width else 0.62)) - 2 * pad
    face, lines, text_w, text_h = _fit(
        text, CAPTION_FONT, max(MIN_FONT_PX, round(h * 0.04)), max_w, h * 0.34
    )
    box = (margin, margin, margin + text_w + 2 * pad, margin + text_h + 2 * pad)
    lw = max(1, round(min(w, h) / 200))
    draw.rectangle(
        (box[0] + lw * 2, box[1] + lw * 2, box[2] + lw * 2, box[3] + lw * 2), fill=(0, 0, 0)
    )
    draw.rectangle(box, fill=CAPTION_FILL, outline=INK, width=lw)
    line_h = text_h / max(1, len(lines))
    for i, line in enumerate(lines):
        draw.text((box[0] + pad, box[1] + pad + i * line_h), line, font=face, fill=INK)
    return box[3]


@dataclass(frozen=True)
class _BalloonFit:
    face: ImageFont.FreeTypeFont
    lines: list[str]
    text_h: float
    width: float
    height: float


def _fit_balloon(text: str, w: int, h: int, max_width: float, max_height: float) -> _BalloonFit:
    """The balloon's font and size: an ellipse around the text, within the limits."""
    pad_w, pad_h = h * 0.02, h * 0.03
    size = max(MIN_FONT_PX, round(h * 0.042))
    face, lines, text_w, text_h = _fit(
        text, BALLOON_FONT, size, (max_width - pad_w) * 0.72, (max_height - pad_h) / 1.45
    )
    return _BalloonFit(face, lines, text_h, text_w / 0.72 + pad_w, text_h * 1.45 + pad_h)


def _draw_balloon(
    draw: ImageDraw.ImageDraw,
    fit: _BalloonFit,
    box: tuple[float, float, float, float],
    target: tuple[float, float] | None,
    w: int,
    h: int,
) -> None:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw, bh = box[2] - box[0], box[3] - box[1]
    lw = max(2, round(min(w, h) / 160))
    if target is None:  # an unseen speaker: the tail points out of the panel
        target = (cx + bw * 0.15, min(h * 0.98, box[3] + h * 0.12))
    tx, ty = target
    # The tail: from the lower part of the balloon toward the speaker, stopping short.
    reach = 0.6 if ty > box[3] else 0.3
    tip = (cx + (tx - cx) * reach, box[3] + max(h * 0.04, (ty - box[3]) * reach))
    base_half = max(bw * 0.07, h * 0.012)
    base_y = cy + bh * 0.3
    tail = [(cx - base_half, base_y), (cx + base_half, base_y), tip]
    draw.polygon(tail, fill=INK, outline=INK, width=lw * 2)
    draw.ellipse(box, fill=INK)
    draw.ellipse((box[0] + lw, box[1] + lw, box[2] - lw, box[3] - lw), fill=PAPER)
    draw.polygon(tail, fill=PAPER)
    line_h = fit.text_h / max(1, len(fit.lines))
    y = cy - fit.text_h / 2
    for i, line in enumerate(fit.lines):
        draw.text(
            (cx - fit.face.getlength(line) / 2, y + i * line_h), line, font=fit.face, fill=INK
        )


def letter(img: Image.Image, panel: Panel) -> None:
    """Letter the panel's caption and balloons onto ``img`` in place.

    The caption sits at the top left; balloons below it and above the figures' heads, one
    centred over its speaker, or two side by side (left one first, the right one a little
    lower, so they read in order), tails pointing at the speakers.
    """
    w, h = img.size
    draw = Draw(img)
    bottom = 0.0
    if panel.caption:
        bottom = _caption(draw, panel.caption, w, h, full_width=not panel.balloons)
    if not panel.balloons:
        return
    figures = figure_layout(panel, w, h)
    heads = {fig.name: fig for fig in figures}
    top = bottom + h * 0.03 if bottom else h * 0.04
    heads_top = min((f.head_centre[1] - f.head_radius for f in figures), default=h * 0.6)
    available = max(h * 0.16, heads_top - top - h * 0.05)
    margin = w * 0.03
    balloons = panel.balloons[:2]
    n = len(balloons)
    max_width = w * 0.62 if n == 1 else (w - 2 * margin) * 0.49
    fits = [
        _fit_balloon(b.text, w, h, max_width, available * (1.0 if n == 1 else 0.8))
        for b in balloons
    ]
    for i, (balloon, fit) in enumerate(zip(balloons, fits, strict=True)):
        fig = heads.get(balloon.speaker or "") if balloon.speaker else heads.get("")
        target = None
        if fig is not None:
            hx, hy = fig.head_centre
            target = (hx, hy - fig.head_radius * 1.2)
        if n == 1:
            centre = target[0] if target else w * 0.5
            left = min(max(margin, centre - fit.width / 2), w - margin - fit.width)
            y = top
        elif i == 0:
            left, y = margin, top
        else:
            left = w - margin - fit.width
            y = top + min(fits[0].height * 0.35, max(0.0, available - fit.height))
        _draw_balloon(draw, fit, (left, y, left + fit.width, y + fit.height), target, w, h)
