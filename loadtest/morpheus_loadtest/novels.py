"""Short novels for the simulated readers: a few chapters of scenes with dialogue, so that
the pipeline splits them into scenes and panels as it does a real one. Each is made
from a seed (the user's number and the submission's), so a run can be repeated."""

from __future__ import annotations

import random

PEOPLE = ["Ada", "Bram", "Cleo", "Dov", "Esme", "Finn", "Greta", "Hugo", "Iris", "Jonah"]
PLACES = [
    "the lighthouse",
    "the harbour market",
    "the old observatory",
    "a train to the north",
    "the flooded library",
    "the rooftop garden",
]
ACTIONS = [
    "climbed the stairs at dusk",
    "opened the letter with shaking hands",
    "watched the storm roll in from the sea",
    "counted the coins twice",
    "lit the lamp and waited",
    "followed the footprints into the snow",
]
LINES = [
    "We should not be here.",
    "The lamp must burn tonight.",
    "Did you hear that?",
    "I kept my promise.",
    "Nobody else knows the way.",
    "Then we go together.",
]
TITLES = ["The Last Lamp", "Salt and Static", "North by Night", "The Paper Key", "Low Tide"]


def novel(seed: int, chapters: int = 2, scenes: int = 2) -> tuple[str, str]:
    """(title, text) of a short novel made from `seed`."""
    rng = random.Random(seed)  # noqa: S311 - made-up prose, not a secret
    title = f"{rng.choice(TITLES)} ({seed})"
    parts = []
    for chapter in range(1, chapters + 1):
        parts.append(f"Chapter {chapter}")
        for _ in range(scenes):
            one, other = rng.sample(PEOPLE, 2)
            parts.append(
                f"{one} {rng.choice(ACTIONS)} at {rng.choice(PLACES)}. "
                f'"{rng.choice(LINES)}" {one} said. {other} {rng.choice(ACTIONS)}. '
                f'"{rng.choice(LINES)}" {other} answered.'
            )
    return title, "\n\n".join(parts) + "\n"
