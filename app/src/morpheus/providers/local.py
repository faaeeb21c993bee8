"""The local panel provider: draws a comic panel with Pillow, deterministically.

The drawing has two layers. ``draw_art`` paints the scene (a background chosen from the
setting and the time of day, simple figures for the characters present);
:func:`morpheus.providers.lettering.letter` adds caption boxes and speech balloons with
tails, lettered in the bundled DejaVu font. Drawing checks the stop flag
(:mod:`morpheus.cancellation`) before the art, the lettering and the PNG encoding of
every panel.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter

from morpheus import cancellation
from morpheus.pipeline.script import Panel
from morpheus.providers.canvas import INK, PAPER, Color, Draw, to_png
from morpheus.providers.layout import Figure, figure_layout
from morpheus.providers.lettering import letter

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
_CLOTHES: tuple[Color, ...] = (
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


def _mix(a: Color, b: Color, t: float) -> Color:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


# --- art ------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _gradient_column(top: Color, bottom: Color) -> Image.Image:
    column = Image.new("RGB", (1, 256))
    column.putdata([_mix(top, bottom, i / 255) for i in range(256)])
    return column


def _vertical_gradient(width: int, height: int, top: Color, bottom: Color) -> Image.Image:
    return _gradient_column(top, bottom).resize((width, height), Image.Resampling.BILINEAR)


_SKIES: dict[str, tuple[Color, Color]] = {
    "day": ((96, 158, 222), (205, 228, 246)),
    "night": ((10, 14, 40), (48, 58, 104)),
}


def _sky(img: Image.Image, time_of_day: str, horizon: int) -> None:
    top, bottom = _SKIES.get(time_of_day, _SKIES["day"])
    img.paste(_vertical_gradient(img.width, max(1, horizon), top, bottom), (0, 0))


def _sun_or_moon(
    draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int, night: bool
) -> None:
    r = min(w, h) * rng.uniform(0.05, 0.075)
    x = w * rng.choice((rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.9)))
    y = h * rng.uniform(0.1, 0.22)
    if night:
        for _ in range(int(w * h / 9000)):
            sx, sy = rng.uniform(0, w), rng.uniform(0, h * 0.5)
            s = max(1.0, min(w, h) / 300)
            draw.ellipse((sx - s, sy - s, sx + s, sy + s), fill=(230, 230, 200))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(240, 238, 210))
        draw.ellipse((x - r * 0.55, y - r * 1.05, x + r * 1.3, y + r * 0.8), fill=(22, 28, 62))
    else:
        draw.ellipse((x - r * 1.5, y - r * 1.5, x + r * 1.5, y + r * 1.5), fill=(255, 244, 200))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 214, 90))


def _clouds(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int, night: bool) -> None:
    colour = (70, 78, 120) if night else (250, 252, 255)
    for _ in range(rng.randint(1, 3)):
        cx, cy = rng.uniform(0, w), rng.uniform(h * 0.08, h * 0.3)
        size = min(w, h) * rng.uniform(0.05, 0.09)
        for k in range(4):
            ox = (k - 1.5) * size * 0.9
            oy = rng.uniform(-0.35, 0.2) * size
            draw.ellipse(
                (cx + ox - size, cy + oy - size * 0.7, cx + ox + size, cy + oy + size * 0.7),
                fill=colour,
            )


def _ground(img: Image.Image, horizon: int, top: Color, bottom: Color) -> None:
    img.paste(_vertical_gradient(img.width, img.height - horizon, top, bottom), (0, horizon))


def _tree(
    draw: ImageDraw.ImageDraw, rng: random.Random, x: float, base: float, size: float, night: bool
) -> None:
    trunk = (60, 40, 25) if night else (110, 75, 45)
    greens = ((20, 50, 35), (25, 60, 40)) if night else ((40, 110, 55), (60, 140, 70), (30, 90, 50))
    draw.rectangle((x - size * 0.07, base - size * 0.45, x + size * 0.07, base), fill=trunk)
    if rng.random() < 0.5:
        for k in range(3):
            y0 = base - size * (0.35 + 0.22 * k)
            half = size * (0.42 - 0.1 * k)
            draw.polygon(
                [(x - half, y0), (x + half, y0), (x, y0 - size * 0.45)], fill=rng.choice(greens)
            )
    else:
        for _ in range(4):
            ox, oy = rng.uniform(-0.22, 0.22) * size, rng.uniform(-0.85, -0.5) * size
            r = size * rng.uniform(0.22, 0.32)
            draw.ellipse(
                (x + ox - r, base + oy - r, x + ox + r, base + oy + r), fill=rng.choice(greens)
            )


def _forest(img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, night: bool) -> int:
    w, h = img.size
    horizon = int(h * rng.uniform(0.55, 0.65))
    _sky(img, "night" if night else "day", horizon)
    _sun_or_moon(draw, rng, w, h, night)
    _ground(
        img,
        horizon,
        (30, 60, 35) if night else (95, 160, 80),
        (15, 35, 20) if night else (55, 115, 50),
    )
    for _ in range(rng.randint(6, 10)):
        _tree(
            draw,
            rng,
            rng.uniform(0, w),
            horizon + rng.uniform(0, h * 0.05),
            h * rng.uniform(0.25, 0.4),
            night,
        )
    for x in (rng.uniform(-0.05, 0.1) * w, rng.uniform(0.9, 1.05) * w):
        _tree(draw, rng, x, h * 1.02, h * rng.uniform(0.7, 0.9), night)
    return horizon


def _sea(img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, night: bool) -> int:
    w, h = img.size
    horizon = int(h * rng.uniform(0.45, 0.55))
    _sky(img, "night" if night else "day", horizon)
    _sun_or_moon(draw, rng, w, h, night)
    if not night:
        _clouds(draw, rng, w, h, night)
    _ground(
        img,
        horizon,
        (20, 35, 70) if night else (40, 100, 160),
        (30, 55, 95) if night else (80, 150, 195),
    )
    wave = (90, 110, 150) if night else (220, 240, 250)
    for _ in range(int(w * h / 12000)):
        x, y = rng.uniform(0, w), rng.uniform(horizon + 4, h * 0.85)
        s = (y - horizon) / h * min(w, h) * 0.12 + 3
        draw.arc(
            (x - s, y - s / 3, x + s, y + s / 3), 200, 340, fill=wave, width=max(1, int(s / 8))
        )
    if rng.random() < 0.6:
        bx, by = rng.uniform(0.15, 0.85) * w, horizon + h * 0.03
        s = h * 0.05
        draw.polygon(
            [
                (bx - s, by),
                (bx + s, by),
                (bx + s * 0.7, by + s * 0.35),
                (bx - s * 0.7, by + s * 0.35),
            ],
            fill=(70, 45, 30),
        )
        draw.polygon(
            [(bx, by - s * 1.6), (bx, by - s * 0.1), (bx + s * 0.9, by - s * 0.1)],
            fill=(235, 230, 215),
        )
    sand = int(h * rng.uniform(0.8, 0.88))
    draw.polygon(
        [(0, sand), (w, sand - h * 0.05), (w, h), (0, h)],
        fill=(120, 105, 80) if night else (228, 205, 150),
    )
    return horizon


def _city(img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, night: bool) -> int:
    w, h = img.size
    horizon = int(h * rng.uniform(0.7, 0.78))
    _sky(img, "night" if night else "day", horizon)
    _sun_or_moon(draw, rng, w, h, night)
    x = -rng.uniform(0, w * 0.05)
    walls = (
        ((40, 42, 60), (55, 50, 65), (35, 45, 55))
        if night
        else ((170, 150, 130), (140, 130, 125), (190, 170, 140), (120, 110, 115), (160, 120, 100))
    )
    while x < w:
        bw = w * rng.uniform(0.1, 0.2)
        top = h * rng.uniform(0.12, 0.45)
        draw.rectangle((x, top, x + bw, horizon), fill=rng.choice(walls))
        lit = (255, 220, 120) if night else (180, 210, 235)
        dark = (25, 25, 35) if night else (90, 110, 130)
        ww, wh = bw / 7, h * 0.035
        for wy in range(int(top + wh), int(horizon - wh * 2), int(wh * 2.2)):
            for k in range(3):
                wx = x + bw * (0.12 + 0.3 * k)
                draw.rectangle(
                    (wx, wy, wx + ww * 1.2, wy + wh), fill=lit if rng.random() < 0.55 else dark
                )
        x += bw + w * rng.uniform(0.0, 0.02)
    _ground(
        img,
        horizon,
        (60, 60, 70) if night else (150, 150, 155),
        (35, 35, 45) if night else (105, 105, 112),
    )
    draw.rectangle(
        (0, horizon, w, horizon + h * 0.03), fill=(80, 80, 90) if night else (190, 185, 175)
    )
    return horizon


def _mountain(img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, night: bool) -> int:
    w, h = img.size
    horizon = int(h * rng.uniform(0.62, 0.7))
    _sky(img, "night" if night else "day", horizon)
    _sun_or_moon(draw, rng, w, h, night)
    if not night:
        _clouds(draw, rng, w, h, night)
    rock = ((50, 55, 80), (40, 45, 70)) if night else ((120, 125, 145), (95, 100, 125))
    snow = (190, 195, 215) if night else (250, 250, 255)
    for k in range(rng.randint(3, 5)):
        peak_x = rng.uniform(-0.1, 1.1) * w
        peak_y = h * rng.uniform(0.12, 0.35)
        half = w * rng.uniform(0.25, 0.45)
        draw.polygon(
            [(peak_x - half, horizon), (peak_x, peak_y), (peak_x + half, horizon)], fill=rock[k % 2]
        )
        cap = 0.25
        draw.polygon(
            [
                (peak_x - half * cap, peak_y + (horizon - peak_y) * cap),
                (peak_x, peak_y),
                (peak_x + half * cap, peak_y + (horizon - peak_y) * cap),
            ],
            fill=snow,
        )
    _ground(
        img,
        horizon,
        (60, 70, 70) if night else (150, 160, 140),
        (30, 40, 40) if night else (110, 120, 100),
    )
    return horizon


def _field(img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, night: bool) -> int:
    w, h = img.size
    horizon = int(h * rng.uniform(0.55, 0.65))
    _sky(img, "night" if night else "day", horizon)
    _sun_or_moon(draw, rng, w, h, night)
    if not night:
        _clouds(draw, rng, w, h, night)
    hills = ((35, 60, 40), (28, 50, 34)) if night else ((130, 190, 90), (105, 170, 75))
    for k in range(3):
        cx = rng.uniform(0, w)
        rx, ry = w * rng.uniform(0.4, 0.7), h * rng.uniform(0.08, 0.15)
        draw.ellipse((cx - rx, horizon - ry, cx + rx, horizon + ry), fill=hills[k % 2])
    _ground(img, horizon, hills[0], (20, 40, 25) if night else (80, 150, 60))
    vx = w * rng.uniform(0.35, 0.65)
    draw.polygon(
        [(vx - w * 0.01, horizon), (vx + w * 0.01, horizon), (w * 0.75, h), (w * 0.25, h)],
        fill=(90, 80, 65) if night else (200, 180, 140),
    )
    return horizon


def _interior(img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, night: bool) -> int:
    w, h = img.size
    horizon = int(h * rng.uniform(0.68, 0.76))
    walls = (
        ((95, 75, 65), (70, 70, 90))
        if night
        else ((232, 214, 184), (206, 222, 210), (225, 200, 200), (210, 205, 225))
    )
    wall = rng.choice(walls)
    img.paste(_vertical_gradient(w, horizon, _mix(wall, (0, 0, 0), 0.1), wall), (0, 0))
    if rng.random() < 0.5:  # wallpaper stripes
        stripe = _mix(wall, (0, 0, 0), 0.06)
        step = max(4, int(w / 24))
        for x in range(0, w, step * 2):
            draw.rectangle((x, 0, x + step, horizon), fill=stripe)
    # window with the sky outside
    wx, wy = w * rng.uniform(0.08, 0.6), h * rng.uniform(0.1, 0.2)
    ww, wh = w * rng.uniform(0.22, 0.3), h * rng.uniform(0.3, 0.38)
    outside = Image.new("RGB", (max(1, int(ww)), max(1, int(wh))))
    _sky(outside, "night" if night else "day", int(wh))
    img.paste(outside, (int(wx), int(wy)))
    frame = (90, 60, 40)
    lw = max(2, int(min(w, h) / 90))
    draw.rectangle((wx, wy, wx + ww, wy + wh), outline=frame, width=lw * 2)
    draw.line((wx + ww / 2, wy, wx + ww / 2, wy + wh), fill=frame, width=lw)
    draw.line((wx, wy + wh / 2, wx + ww, wy + wh / 2), fill=frame, width=lw)
    if night:
        mx, my, mr = wx + ww * 0.7, wy + wh * 0.3, min(ww, wh) * 0.12
        draw.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(240, 238, 210))
    # a picture frame or a bookshelf on the other side
    px = w * (rng.uniform(0.62, 0.78) if wx < w * 0.4 else rng.uniform(0.08, 0.2))
    if rng.random() < 0.5:
        pw, ph = w * 0.14, h * 0.16
        draw.rectangle((px, h * 0.18, px + pw, h * 0.18 + ph), fill=(200, 170, 90))
        draw.rectangle(
            (px + lw * 2, h * 0.18 + lw * 2, px + pw - lw * 2, h * 0.18 + ph - lw * 2),
            fill=rng.choice(((90, 140, 170), (150, 110, 80), (110, 150, 100))),
        )
    else:
        sw, top = w * 0.18, h * 0.12
        draw.rectangle((px, top, px + sw, horizon), fill=(110, 75, 45))
        shelf_h = (horizon - top) / 4
        for k in range(4):
            y = top + k * shelf_h
            bx = px + lw
            while bx < px + sw - lw * 3:
                bw = rng.uniform(0.03, 0.06) * sw * 2
                draw.rectangle(
                    (bx, y + shelf_h * rng.uniform(0.15, 0.3), bx + bw, y + shelf_h - lw),
                    fill=rng.choice(_CLOTHES),
                )
                bx += bw + 1
            draw.line(
                (px, y + shelf_h - lw / 2, px + sw, y + shelf_h - lw / 2),
                fill=(70, 45, 25),
                width=lw,
            )
    floor = (90, 60, 40) if night else (165, 115, 70)
    _ground(img, horizon, floor, _mix(floor, (0, 0, 0), 0.3))
    plank = _mix(floor, (0, 0, 0), 0.2)
    for k in range(1, 6):
        y = horizon + (h - horizon) * (k / 6) ** 1.4
        draw.line((0, y, w, y), fill=plank, width=max(1, lw // 2))
    draw.rectangle((0, horizon - lw * 2, w, horizon), fill=_mix(wall, (0, 0, 0), 0.35))
    if night:  # a standing lamp and its soft, warm light
        lx = w * rng.choice((rng.uniform(0.06, 0.14), rng.uniform(0.86, 0.94)))
        shade_y, shade_h, shade_w = h * 0.3, h * 0.1, w * 0.05
        small = (max(1, w // 8), max(1, h // 8))
        mask = Image.new("L", small, 0)
        ImageDraw.Draw(mask).ellipse(
            (
                (lx - w * 0.3) / 8,
                (shade_y - h * 0.25) / 8,
                (lx + w * 0.3) / 8,
                (shade_y + h * 0.45) / 8,
            ),
            fill=70,
        )
        mask = mask.filter(ImageFilter.GaussianBlur(max(1, small[0] / 14)))
        glow = Image.new("RGB", (w, h), (255, 205, 130))
        img.paste(glow, (0, 0), mask.resize((w, h), Image.Resampling.BILINEAR))
        draw.line((lx, shade_y + shade_h, lx, h * 0.95), fill=(40, 35, 30), width=lw)
        draw.ellipse(
            (lx - shade_w * 0.7, h * 0.93, lx + shade_w * 0.7, h * 0.97), fill=(40, 35, 30)
        )
        draw.polygon(
            [
                (lx - shade_w * 0.5, shade_y),
                (lx + shade_w * 0.5, shade_y),
                (lx + shade_w, shade_y + shade_h),
                (lx - shade_w, shade_y + shade_h),
            ],
            fill=(250, 215, 140),
            outline=(120, 90, 50),
        )
    return horizon


_BACKGROUNDS = {
    "forest": _forest,
    "sea": _sea,
    "city": _city,
    "mountain": _mountain,
    "field": _field,
    "interior": _interior,
}


def _figure(draw: ImageDraw.ImageDraw, fig: Figure, facing: float, speaking: bool) -> None:
    """A simple figure; its looks come from the name, so a character is recognisable."""
    rng = _name_rng(fig.name or "stranger")
    skin, hair = rng.choice(_SKIN), rng.choice(_HAIR)
    shirt, trousers = rng.choice(_CLOTHES), rng.choice(_TROUSERS)
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
    background = _BACKGROUNDS.get(panel.setting, _interior)
    background(img, draw, rng, panel.time_of_day == "night")
    figures = figure_layout(panel, width, height)
    speakers = {b.speaker or "" for b in panel.balloons}
    for i, fig in enumerate(figures):
        facing = 0.0 if len(figures) == 1 else (1.0 if i < len(figures) / 2 else -1.0)
        _figure(draw, fig, facing, speaking=fig.name in speakers)
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
