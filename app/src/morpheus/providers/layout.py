"""Where the figures of a panel stand: the art draws them there, and the lettering points
its balloons' tails at their heads."""

from __future__ import annotations

import random
from dataclasses import dataclass

from morpheus.pipeline.script import Panel


@dataclass(frozen=True)
class Figure:
    name: str
    x: float  # centre, in pixels
    feet: float  # y of the feet
    height: float

    @property
    def head_centre(self) -> tuple[float, float]:
        return self.x, self.feet - self.height + self.height * 0.09

    @property
    def head_radius(self) -> float:
        return self.height * 0.09


def panel_cast(panel: Panel) -> list[str]:
    """Who appears in the panel: named characters, or one stranger for unnamed speech."""
    if panel.characters:
        return list(panel.characters)
    if panel.balloons:
        return [""]
    return []


def figure_layout(panel: Panel, width: int, height: int) -> list[Figure]:
    """Where the figures stand; shared by the art and the balloon tails."""
    cast = panel_cast(panel)
    if not cast:
        return []
    rng = random.Random(panel.seed ^ 0x5F3759DF)  # noqa: S311 - drawing, not security
    n = len(cast)
    figures = []
    for i, name in enumerate(cast):
        slot = (i + 0.5) / n
        x = width * (0.14 + 0.72 * slot) + rng.uniform(-0.04, 0.04) * width
        scale = rng.uniform(0.88, 1.0) if n > 1 else rng.uniform(0.95, 1.05)
        fig_height = height * 0.56 * scale
        feet = height * rng.uniform(0.965, 1.0)
        figures.append(Figure(name=name, x=x, feet=feet, height=fig_height))
    return figures
