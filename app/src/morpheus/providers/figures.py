"""The figures of a panel: simple people whose looks (skin, hair, clothes) come from the
character's name, so that a character is recognisable from one panel to the next; a
speaker gestures and opens their mouth."""

from __future__ import annotations

import hashlib
import random

from PIL import ImageDraw

from morpheus.providers.canvas import INK, Color
from morpheus.providers.layout import Figure

_SKIN: tuple[Color, ...] = (
    (255, 219, 172),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (141, 85, 36),
    (255, 205, 148),
)
_HAIR: tuple[Color, ...] = (
    (40, 30, 25),
    (90, 56, 37),
    (160, 110, 60),
    (220, 190, 120),
    (120, 120, 120),
    (150, 40, 30),
    (20, 20, 20),
)
# Shirts; the books on an interior's shelves too (morpheus.providers.backgrounds).
CLOTHES: tuple[Color, ...] = (
    (190, 50, 50),
    (50, 90, 170),
    (60, 140, 80),
    (200, 150, 40),
    (120, 70, 150),
    (40, 40, 40),
    (210, 110, 40),
    (70, 150, 160),
    (150, 40, 90),
)
_TROUSERS: tuple[Color, ...] = ((50, 50, 70), (80, 60, 40), (40, 40, 40), (70, 80, 110))


def _name_rng(name: str) -> random.Random:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - drawing, not security


def draw_figure(draw: ImageDraw.ImageDraw, fig: Figure, facing: float, speaking: bool) -> None:
    """A simple figure; its looks come from the name, so a character is recognisable."""
    rng = _name_rng(fig.name or "stranger")
    skin, hair = rng.choice(_SKIN), rng.choice(_HAIR)
    shirt, trousers = rng.choice(CLOTHES), rng.choice(_TROUSERS)
    long_hair = rng.random() < 0.45
    if not fig.name:
        skin, hair, shirt, trousers = (150, 150, 155), (90, 90, 95), (110, 110, 118), (80, 80, 88)
    h, x, feet = fig.height, fig.x, fig.feet
    lw = max(2, int(h / 60))
    hx, hy = fig.head_centre
    hr = fig.head_radius
    shoulder_y, hip_y = hy + hr * 1.3, feet - h * 0.45
    half = h * 0.12
    # legs
    for side in (-1, 1):
        draw.line(
            (x + side * half * 0.45, hip_y, x + side * half * 0.6, feet),
            fill=trousers,
            width=int(h * 0.07),
        )
        draw.ellipse(
            (
                x + side * half * 0.6 - h * 0.05,
                feet - h * 0.025,
                x + side * half * 0.6 + h * 0.05,
                feet + h * 0.015,
            ),
            fill=INK,
        )
    # torso
    draw.rounded_rectangle(
        (x - half, shoulder_y, x + half, hip_y + h * 0.04),
        radius=half * 0.5,
        fill=shirt,
        outline=INK,
        width=lw,
    )
    # arms: a speaker gestures with the arm on the side they face
    gesture_side = 1 if facing >= 0 else -1
    for side in (-1, 1):
        hand = (x + side * half * 1.45, hip_y - h * 0.02)
        if speaking and side == gesture_side:
            hand = (x + side * half * 2.1, shoulder_y + h * 0.02)
        draw.line(
            (x + side * half * 0.9, shoulder_y + h * 0.03, *hand), fill=shirt, width=int(h * 0.055)
        )
        draw.ellipse(
            (hand[0] - h * 0.028, hand[1] - h * 0.028, hand[0] + h * 0.028, hand[1] + h * 0.028),
            fill=skin,
        )
    # neck and head
    if long_hair:
        draw.rounded_rectangle(
            (hx - hr * 1.12, hy - hr * 0.9, hx + hr * 1.12, hy + hr * 1.6),
            radius=hr * 0.6,
            fill=hair,
        )
    draw.rectangle((x - hr * 0.35, hy + hr * 0.7, x + hr * 0.35, shoulder_y + lw), fill=skin)
    draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=skin, outline=INK, width=lw)
    draw.chord((hx - hr * 1.05, hy - hr * 1.1, hx + hr * 1.05, hy + hr * 0.7), 180, 360, fill=hair)
    eye = max(1.5, hr * 0.12)
    for ex in (-0.35, 0.35):
        cx = hx + (ex + facing * 0.2) * hr
        draw.ellipse((cx - eye, hy + hr * 0.05 - eye, cx + eye, hy + hr * 0.05 + eye), fill=INK)
    mouth_x = hx + facing * hr * 0.2
    if speaking:
        draw.ellipse(
            (mouth_x - hr * 0.16, hy + hr * 0.38, mouth_x + hr * 0.16, hy + hr * 0.62), fill=INK
        )
    else:
        draw.arc(
            (mouth_x - hr * 0.3, hy + hr * 0.25, mouth_x + hr * 0.3, hy + hr * 0.6),
            20,
            160,
            fill=INK,
            width=max(1, lw // 2),
        )
