"""What the art and the lettering draw with: ink and paper, an ``ImageDraw`` that takes
boxes with their corners in any order, and the PNG encoding of a panel."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

# zlib level 3: flat comic art compresses nearly as well as at 6, in a fraction of the time.
PNG_COMPRESS_LEVEL = 3

Color = tuple[int, int, int]
INK: Color = (20, 20, 24)
PAPER: Color = (255, 255, 255)


def _box(xy: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = xy
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


class Draw(ImageDraw.ImageDraw):
    """ImageDraw that accepts boxes with corners in any order (tiny panels round oddly)."""

    def rectangle(self, xy: Any, *args: Any, **kwargs: Any) -> None:
        super().rectangle(_box(xy), *args, **kwargs)

    def ellipse(self, xy: Any, *args: Any, **kwargs: Any) -> None:
        super().ellipse(_box(xy), *args, **kwargs)

    def rounded_rectangle(self, xy: Any, *args: Any, **kwargs: Any) -> None:
        super().rounded_rectangle(_box(xy), *args, **kwargs)

    def chord(self, xy: Any, *args: Any, **kwargs: Any) -> None:
        super().chord(_box(xy), *args, **kwargs)

    def arc(self, xy: Any, *args: Any, **kwargs: Any) -> None:
        super().arc(_box(xy), *args, **kwargs)


def to_png(img: Image.Image) -> bytes:
    """The image as PNG bytes (zlib level :data:`PNG_COMPRESS_LEVEL`)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()
