"""The local provider draws real, deterministic PNG panels with lettering."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from morpheus import cancellation
from morpheus.cancellation import Cancelled, StopFlag
from morpheus.pipeline.script import Balloon, Panel
from morpheus.pipeline.segment import segment
from morpheus.providers import LocalProvider, get_provider
from morpheus.providers.lettering import CAPTION_FILL, FONT_DIR
from morpheus.settings import Settings
from PIL import Image, ImageChops, ImageStat

W, H = 400, 300


def make_panel(**changes: object) -> Panel:
    base: dict[str, object] = {
        "number": 1,
        "chapter": 1,
        "scene": 1,
        "caption": "The storm rolled in off the sea.",
        "balloons": [Balloon("Anna", "Is anyone there?"), Balloon("Tom", "Only me.")],
        "characters": ["Anna", "Tom"],
        "seed": 1234,
        "setting": "sea",
        "time_of_day": "day",
    }
    base.update(changes)
    return Panel(**base)  # type: ignore[arg-type]


def image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return img.convert("RGB")


def count(img: Image.Image, colour: tuple[int, int, int]) -> int:
    """How many pixels have exactly this colour."""
    colours = img.getcolors(maxcolors=img.width * img.height) or []
    return next((n for n, c in colours if c == colour), 0)


def test_font_and_licence_are_bundled() -> None:
    assert (FONT_DIR / "DejaVuSans.ttf").stat().st_size > 100_000
    licence = (FONT_DIR / "LICENSE-DejaVu.txt").read_text()
    assert "Bitstream" in licence


def test_panel_is_a_real_png_of_the_requested_size() -> None:
    data = LocalProvider().render(make_panel(), W, H)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = image(data)
    assert img.size == (W, H)
    colours = img.getcolors(maxcolors=W * H)
    assert colours is not None and len(colours) > 50  # a drawing, not a blank
    assert max(ImageStat.Stat(img).stddev) > 20


def test_same_panel_gives_the_same_bytes_and_another_seed_does_not() -> None:
    provider = LocalProvider()
    first = provider.render(make_panel(), W, H)
    assert provider.render(make_panel(), W, H) == first
    assert LocalProvider().render(make_panel(), W, H) == first
    assert provider.render(make_panel(seed=99), W, H) != first


def test_balloons_are_drawn_and_lettered() -> None:
    provider = LocalProvider()
    with_balloons = image(provider.render(make_panel(caption=None), W, H))
    without = image(provider.render(make_panel(caption=None, balloons=[]), W, H))
    diff = (
        ImageChops.difference(with_balloons, without)
        .convert("L")
        .point(lambda v: 255 if v > 40 else 0)
    )
    box = diff.getbbox()
    assert box is not None
    # The balloons sit in the upper part of the panel, above the figures' heads.
    assert box[1] < H * 0.2
    changed = diff.histogram()[255]
    assert changed > W * H * 0.03
    # Different words give different lettering in the same balloon.
    other_words = image(
        provider.render(
            make_panel(
                caption=None, balloons=[Balloon("Anna", "Not here."), Balloon("Tom", "Only me.")]
            ),
            W,
            H,
        )
    )
    assert ImageChops.difference(with_balloons, other_words).getbbox() is not None
    # Balloons are white with black ink lettering inside.
    assert count(with_balloons, (255, 255, 255)) > count(without, (255, 255, 255)) + 1000


def test_caption_box_is_drawn_only_with_a_caption() -> None:
    provider = LocalProvider()
    with_caption = image(provider.render(make_panel(balloons=[]), W, H))
    without = image(provider.render(make_panel(balloons=[], caption=None), W, H))

    assert count(with_caption, CAPTION_FILL) > 2000
    assert count(without, CAPTION_FILL) == 0


@pytest.mark.parametrize("setting", ["forest", "sea", "city", "mountain", "field", "interior"])
def test_every_setting_draws_and_night_is_darker(setting: str) -> None:
    provider = LocalProvider()
    day = image(provider.render(make_panel(setting=setting, balloons=[], caption=None), W, H))
    night = image(
        provider.render(
            make_panel(setting=setting, time_of_day="night", balloons=[], caption=None), W, H
        )
    )
    brightness = lambda img: sum(ImageStat.Stat(img.convert("L")).mean)  # noqa: E731
    assert brightness(night) < brightness(day) - 20


def test_settings_look_different() -> None:
    provider = LocalProvider()
    renders = {
        s: provider.render(make_panel(setting=s, balloons=[], caption=None), W, H)
        for s in ("forest", "sea", "city", "interior")
    }
    assert len(set(renders.values())) == 4


def test_a_character_looks_the_same_in_every_panel() -> None:
    """Figure colours come from the name, not the panel: Anna's shirt is stable."""
    provider = LocalProvider(supersample=1)
    a = image(provider.render(make_panel(characters=["Anna"], balloons=[], caption=None), W, H))
    b = image(
        provider.render(
            make_panel(characters=["Anna"], balloons=[], caption=None, seed=777, setting="forest"),
            W,
            H,
        )
    )
    centre_a = a.getpixel((W // 2, int(H * 0.62)))
    centre_b = b.getpixel((W // 2, int(H * 0.62)))
    assert isinstance(centre_a, tuple) and isinstance(centre_b, tuple)
    assert max(abs(x - y) for x, y in zip(centre_a, centre_b, strict=True)) < 40


def test_long_text_still_fits() -> None:
    long_caption = " ".join(["word"] * 60)
    data = LocalProvider().render(make_panel(caption=long_caption), 200, 150)
    assert image(data).size == (200, 150)


def test_too_small_a_panel_is_refused() -> None:
    with pytest.raises(ValueError, match="too small to draw"):
        LocalProvider().render(make_panel(), 8, 8)


def _settings(tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "_secrets_dir": tmp_path,
        "environment": "test",
        "database_url": "postgresql+psycopg://postgres@127.0.0.1:5432/unused",
        "redis_url": "redis://127.0.0.1:6379/0",
        "secret_key": "test-only-secret-key-not-for-production-0123456789",
        "storage_path": tmp_path / "storage",
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def test_get_provider_defaults_to_local(tmp_path: Path) -> None:
    provider = get_provider(_settings(tmp_path))
    assert isinstance(provider, LocalProvider)
    assert provider.name == "local"


def test_get_provider_runpod_needs_an_endpoint_and_a_key() -> None:
    """Settings refuse this at start; the provider checks again for any other caller."""
    incomplete = SimpleNamespace(
        provider="runpod",
        runpod_base_url="http://127.0.0.1:9",
        runpod_endpoint_id=None,
        runpod_api_key=None,
    )
    with pytest.raises(ValueError, match="MORPHEUS_RUNPOD_ENDPOINT_ID is not set"):
        get_provider(incomplete)  # type: ignore[arg-type]
    incomplete.runpod_endpoint_id = uuid.uuid4().hex
    with pytest.raises(ValueError, match="MORPHEUS_RUNPOD_API_KEY is not set"):
        get_provider(incomplete)  # type: ignore[arg-type]


def test_get_provider_refuses_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown panel provider 'dalle'"):
        get_provider(SimpleNamespace(provider="dalle"))  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(16, 16), (64, 48), (48, 200), (1200, 300)])
@pytest.mark.parametrize("setting", ["forest", "sea", "city", "mountain", "field", "interior"])
def test_odd_sizes_draw_in_every_setting(setting: str, size: tuple[int, int]) -> None:
    for night in ("day", "night"):
        data = LocalProvider().render(make_panel(setting=setting, time_of_day=night), *size)
        assert image(data).size == size


def test_bytes_are_the_same_in_another_process() -> None:
    """No per-process state (hash seeds, caches) leaks into the drawing."""
    script = (
        "import hashlib, sys\n"
        "from morpheus.pipeline.segment import segment\n"
        "from morpheus.providers.local import LocalProvider\n"
        "panel = next(segment(sys.argv[1]).panels())\n"
        "print(hashlib.sha256(LocalProvider().render(panel, 200, 150)).hexdigest())\n"
    )
    text = '"Where is everyone?" asked Anna, looking down the empty street at night.'
    digests = set()
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", script, text],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            timeout=60,
        )
        digests.add(result.stdout.strip())
    panel = next(segment(text).panels())
    digests.add(hashlib.sha256(LocalProvider().render(panel, 200, 150)).hexdigest())
    assert len(digests) == 1


def test_drawing_stops_when_asked() -> None:
    flag = StopFlag()
    flag.set("the worker is shutting down")
    with cancellation.watching(flag), pytest.raises(Cancelled, match="shutting down"):
        LocalProvider().render(make_panel(), W, H)
