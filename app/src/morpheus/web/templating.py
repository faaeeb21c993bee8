"""Jinja2 templates of the storefront and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

from morpheus import __version__

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "\u2013"


def _iso_when(value: object) -> str:
    """A worker's ISO timestamp as ``HH:MM:SS UTC`` (or as given when it is not one)."""
    if not isinstance(value, str):
        return "\u2013"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%H:%M:%S UTC")


STAGE_ORDER = ("segment", "render", "compose", "package")


def _stage_timings(timings: dict[str, float] | None) -> list[tuple[str, float]]:
    """Stage timings in pipeline order, unknown stages last."""
    items = list((timings or {}).items())
    rank = {stage: n for n, stage in enumerate(STAGE_ORDER)}
    return sorted(items, key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def make_templates() -> Jinja2Templates:
    """Templates with autoescaping and the project's small filters."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters["duration"] = _duration
    templates.env.filters["when"] = _when
    templates.env.filters["iso_when"] = _iso_when
    templates.env.filters["stage_timings"] = _stage_timings
    templates.env.globals["version"] = __version__
    return templates
