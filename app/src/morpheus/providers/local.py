"""The local panel provider: draws a comic panel with Pillow, deterministically.

The drawing has two layers. ``draw_art`` paints the scene: a background chosen from the
setting and the time of day (:mod:`morpheus.providers.backgrounds`), simple figures for
the characters present (:mod:`morpheus.providers.figures`);
:func:`morpheus.providers.lettering.letter` adds caption boxes and speech balloons with
tails, lettered in the bundled DejaVu font. Drawing checks the stop flag
(:mod:`morpheus.cancellation`) before the art, the lettering and the PNG encoding of
every panel.
"""

from __future__ import annotations

import hashlib
import random

from PIL import Image

from morpheus import cancellation
from morpheus.pipeline.script import Panel
from morpheus.providers.backgrounds import draw_background
from morpheus.providers.canvas import PAPER, Draw, to_png
from morpheus.providers.figures import draw_figure
from morpheus.providers.layout import figure_layout
from morpheus.providers.lettering import letter


def scene_seed(panel: Panel) -> int:
    key = f"{panel.chapter}/{panel.scene}/{panel.setting}/{panel.time_of_day}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def draw_art(panel: Panel, width: int, height: int) -> Image.Image:
    """Paint the panel's scene and figures, without lettering."""
    # The background comes from the scene, not the panel: a room keeps its wallpaper and
    # a street its houses from one panel to the next.
    rng = random.Random(scene_seed(panel))  # noqa: S311 - drawing, not security
    img = Image.new("RGB", (width, height), PAPER)
    draw = Draw(img)
    draw_background(img, draw, rng, panel.setting, panel.time_of_day == "night")
    figures = figure_layout(panel, width, height)
    speakers = {b.speaker or "" for b in panel.balloons}
    for i, fig in enumerate(figures):
        facing = 0.0 if len(figures) == 1 else (1.0 if i < len(figures) / 2 else -1.0)
        draw_figure(draw, fig, facing, speaking=fig.name in speakers)
    return img


class LocalProvider:
    """Draws panels on this machine; the same panel always gives the same bytes."""

    name = "local"

    def __init__(self, supersample: int = 2) -> None:
        self.supersample = max(1, supersample)

    def render_image(
        self, panel: Panel, width: int, height: int, *, lettering: bool = True
    ) -> Image.Image:
        if width < 16 or height < 16:
            raise ValueError(f"panel size {width}x{height} is too small to draw")
        s = self.supersample if width * height <= 1_000_000 else 1
        cancellation.check()
        img = draw_art(panel, width * s, height * s)
        if lettering:
            cancellation.check()
            letter(img, panel)
        if s > 1:
            img = img.reduce(s)
        return img

    def render(self, panel: Panel, width: int, height: int) -> bytes:
        img = self.render_image(panel, width, height)
        cancellation.check()
        return to_png(img)
