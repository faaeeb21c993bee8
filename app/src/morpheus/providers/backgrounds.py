"""The backgrounds of the panels, one painter per setting (forest, sea, city, mountain,
field, interior), by day or by night: the scene behind the figures."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter

from morpheus.providers.canvas import Color
from morpheus.providers.figures import CLOTHES

# Paints a setting's background on the image; returns the horizon's height in pixels.
Painter = Callable[[Image.Image, ImageDraw.ImageDraw, random.Random, bool], int]


def _mix(a: Color, b: Color, t: float) -> Color:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


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
                    fill=rng.choice(CLOTHES),
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


_BACKGROUNDS: dict[str, Painter] = {
    "forest": _forest,
    "sea": _sea,
    "city": _city,
    "mountain": _mountain,
    "field": _field,
    "interior": _interior,
}


def draw_background(
    img: Image.Image, draw: ImageDraw.ImageDraw, rng: random.Random, setting: str, night: bool
) -> int:
    """Paint the setting's background (a room for a setting it does not know); return the
    horizon's height in pixels."""
    return _BACKGROUNDS.get(setting, _interior)(img, draw, rng, night)
