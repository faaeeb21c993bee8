"""The script of a comic: chapters hold scenes, scenes hold panels.

The data model that segmentation (:mod:`morpheus.pipeline.segment`) produces and the
panel providers and page composition consume. It imports nothing of the pipeline's
heuristics, so that they depend on the model only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SETTING = "interior"
DEFAULT_TIME = "day"


@dataclass(frozen=True)
class Balloon:
    speaker: str | None
    text: str


@dataclass(frozen=True)
class Panel:
    number: int
    chapter: int
    scene: int
    caption: str | None
    balloons: list[Balloon]
    characters: list[str]
    seed: int
    setting: str = DEFAULT_SETTING
    time_of_day: str = DEFAULT_TIME

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (sent to remote renderers)."""
        return {
            "number": self.number,
            "chapter": self.chapter,
            "scene": self.scene,
            "caption": self.caption,
            "balloons": [{"speaker": b.speaker, "text": b.text} for b in self.balloons],
            "characters": list(self.characters),
            "seed": self.seed,
            "setting": self.setting,
            "time_of_day": self.time_of_day,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Panel:
        """The inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed dict."""
        try:
            return cls(
                number=int(data["number"]),
                chapter=int(data.get("chapter", 1)),
                scene=int(data.get("scene", 1)),
                caption=(str(data["caption"]) if data.get("caption") else None),
                balloons=[
                    Balloon(speaker=b.get("speaker"), text=str(b["text"]))
                    for b in data.get("balloons", [])
                ],
                characters=[str(c) for c in data.get("characters", [])],
                seed=int(data["seed"]),
                setting=str(data.get("setting", DEFAULT_SETTING)),
                time_of_day=str(data.get("time_of_day", DEFAULT_TIME)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a panel: {exc}") from None


@dataclass
class Scene:
    index: int
    setting: str
    panels: list[Panel] = field(default_factory=list)
    time_of_day: str = DEFAULT_TIME


@dataclass
class Chapter:
    index: int
    title: str
    scenes: list[Scene] = field(default_factory=list)


@dataclass
class Script:
    chapters: list[Chapter]

    def panels(self) -> Iterator[Panel]:
        for chapter in self.chapters:
            for scene in chapter.scenes:
                yield from scene.panels

    @property
    def panel_count(self) -> int:
        return sum(len(scene.panels) for chapter in self.chapters for scene in chapter.scenes)

    def chapter_titles(self) -> dict[int, str]:
        return {chapter.index: chapter.title for chapter in self.chapters}
