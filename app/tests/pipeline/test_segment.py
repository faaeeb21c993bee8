"""Segmentation: chapters, scenes, captions, balloons with speakers; bounded lengths;
deterministic output."""

from __future__ import annotations

import pytest
from morpheus.pipeline.script import Balloon, Panel
from morpheus.pipeline.segment import BALLOON_MAX_CHARS, CAPTION_MAX_CHARS, detect_setting, segment

# --- chapters ---------------------------------------------------------------------------

HEADINGS = [
    pytest.param("Chapter 1", "Chapter 1", id="chapter-digit"),
    pytest.param("CHAPTER ONE", "CHAPTER ONE", id="chapter-word-caps"),
    pytest.param("Chapter Twenty-One", "Chapter Twenty-One", id="chapter-compound-word"),
    pytest.param("Chapter IV: The Storm", "Chapter IV: The Storm", id="chapter-roman-title"),
    pytest.param("chapter 12. Home", "chapter 12. Home", id="chapter-lowercase"),
    pytest.param("# The Storm", "The Storm", id="markdown-h1"),
    pytest.param("## Part Two ##", "Part Two", id="markdown-h2-closed"),
    pytest.param("Prologue", "Prologue", id="prologue"),
    pytest.param("Epilogue: After", "Epilogue: After", id="epilogue"),
]


@pytest.mark.parametrize(("heading", "title"), HEADINGS)
def test_chapter_headings(heading: str, title: str) -> None:
    script = segment(f"Intro text here.\n\n{heading}\n\nThe body of the chapter.")
    assert [c.title for c in script.chapters] == ["Chapter 1", title]
    assert script.chapters[1].scenes[0].panels[0].caption == "The body of the chapter."


NOT_HEADINGS = [
    pytest.param("Chapter and verse were quoted at length.", id="sentence-starting-chapter"),
    pytest.param("The chapter ended.", id="chapter-mid-sentence"),
    pytest.param("Chapter 3\nand more on the same paragraph", id="two-line-paragraph"),
    pytest.param("Chapter 3 explained the rules of the game to us.", id="chapter-sentence"),
    pytest.param("Chapter 3 was the one she liked", id="chapter-lowercase-rest"),
]


@pytest.mark.parametrize("paragraph", NOT_HEADINGS)
def test_not_headings(paragraph: str) -> None:
    script = segment(f"Start.\n\n{paragraph}")
    assert len(script.chapters) == 1


def test_heading_with_a_subtitle_on_the_next_line() -> None:
    script = segment("CHAPTER I\nThe Boy Who Lived\n\nMr Dursley was a big man.")
    assert [c.title for c in script.chapters] == ["CHAPTER I: The Boy Who Lived"]
    assert next(script.panels()).caption == "Mr Dursley was a big man."


def test_heading_with_the_text_right_below_it() -> None:
    script = segment("Chapter 2\nIt was a dark and stormy night,\nand the rain fell.")
    assert [c.title for c in script.chapters] == ["Chapter 2"]
    assert next(script.panels()).caption == "It was a dark and stormy night, and the rain fell."


def test_text_without_headings_is_one_chapter() -> None:
    script = segment("Just a story.\n\nWith two paragraphs.")
    assert [c.title for c in script.chapters] == ["Chapter 1"]
    assert [p.caption for p in script.panels()] == ["Just a story.", "With two paragraphs."]


def test_a_heading_with_nothing_under_it_gives_way_to_the_next() -> None:
    script = segment("# The Book Title\n\nChapter 1\n\nFirst words.\n\nChapter 2\n\nMore words.")
    assert [(c.index, c.title) for c in script.chapters] == [(1, "Chapter 1"), (2, "Chapter 2")]
    assert [p.chapter for p in script.panels()] == [1, 2]


def test_empty_text_gives_an_empty_script() -> None:
    assert segment("").chapters == []
    assert segment("\n\n* * *\n\n").panel_count == 0


# --- scenes -----------------------------------------------------------------------------

BREAKS = [
    pytest.param("***", id="stars"),
    pytest.param("* * *", id="spaced-stars"),
    pytest.param("#", id="hash"),
    pytest.param("---", id="dashes"),
    pytest.param("~ ~ ~", id="tildes"),
    pytest.param("### Later", id="markdown-subheading"),
]


@pytest.mark.parametrize("marker", BREAKS)
def test_scene_breaks(marker: str) -> None:
    script = segment(f"Chapter 1\n\nIn the kitchen.\n\n{marker}\n\nOn the road.")
    scenes = script.chapters[0].scenes
    assert [[p.caption for p in s.panels] for s in scenes] == [
        ["In the kitchen."],
        ["On the road."],
    ]
    assert [s.index for s in scenes] == [1, 2]


def test_a_wide_blank_gap_breaks_the_scene() -> None:
    assert len(segment("One.\n\n\n\nTwo.").chapters[0].scenes) == 2
    assert len(segment("One.\n\nTwo.").chapters[0].scenes) == 1


@pytest.mark.parametrize(
    "shift",
    [
        "The next morning the rain stopped.",
        "Hours later, they arrived.",
        "Meanwhile, Tom ran.",
        "Back at the farm, the dogs barked.",
        "Elsewhere, a train left the station.",
    ],
)
def test_time_or_place_shift_starts_a_new_scene(shift: str) -> None:
    script = segment(f"They slept in the house.\n\n{shift}")
    assert len(script.chapters[0].scenes) == 2


SETTINGS = [
    pytest.param(
        "They walked through the forest under tall trees.", ("forest", "day"), id="forest"
    ),
    pytest.param("Waves broke on the shore of the sea.", ("sea", "day"), id="sea"),
    pytest.param("The street was full; the market and the square.", ("city", "day"), id="city"),
    pytest.param("Snow on the mountain peak.", ("mountain", "day"), id="mountain"),
    pytest.param("Across the field the road ran to the hill.", ("field", "day"), id="field"),
    pytest.param("In the kitchen by the table.", ("interior", "day"), id="interior"),
    pytest.param("Nothing to see.", ("interior", "day"), id="default"),
    pytest.param(
        "At midnight the moon rose over the dark forest.", ("forest", "night"), id="night"
    ),
]


@pytest.mark.parametrize(("text", "expected"), SETTINGS)
def test_detect_setting(text: str, expected: tuple[str, str]) -> None:
    assert detect_setting(text) == expected
    panel = next(segment(text).panels())
    assert (panel.setting, panel.time_of_day) == expected


# --- dialogue ---------------------------------------------------------------------------

DIALOGUE = [
    pytest.param('"Hello," said Anna.', [("Anna", "Hello.")], None, id="said-name"),
    pytest.param('"Hello," Anna said.', [("Anna", "Hello.")], None, id="name-said"),
    pytest.param('Anna said, "Hello."', [("Anna", "Hello.")], None, id="name-said-before"),
    pytest.param('"Where?" Anna asked.', [("Anna", "Where?")], None, id="asked"),
    pytest.param('"Where?" asked Mrs Hale.', [("Mrs Hale", "Where?")], None, id="titled-name"),
    pytest.param("\u201cRun!\u201d shouted Tom.", [("Tom", "Run!")], None, id="curly-quotes"),
    pytest.param('"Hi," she said.', [(None, "Hi.")], None, id="pronoun-unknown"),
    pytest.param(
        "\u2018I don\u2019t know,\u2019 said Anna.",
        [("Anna", "I don\u2019t know.")],
        None,
        id="single-quotes",
    ),
    pytest.param("Tom\u2019s dog barked.", [], "Tom\u2019s dog barked.", id="apostrophe-only"),
    pytest.param('"Yes."', [(None, "Yes.")], None, id="unattributed"),
    pytest.param(
        '"Hi," said Tom.\n\nTom looked up. "Run."',
        [("Tom", "Hi."), ("Tom", "Run.")],
        "Tom looked up.",
        id="action-beat",
    ),
    pytest.param(
        'Suddenly the door opened. "Who is there?"',
        [(None, "Who is there?")],
        "Suddenly the door opened.",
        id="beat-without-a-known-name",
    ),
    pytest.param(
        '"Wait," said Anna. "Come back."',
        [("Anna", "Wait."), ("Anna", "Come back.")],
        None,
        id="continued-quote",
    ),
    pytest.param(
        '"Go," said Anna, turning toward the door as the wind rose outside.',
        [("Anna", "Go.")],
        "Turning toward the door as the wind rose outside.",
        id="attribution-with-action",
    ),
]


@pytest.mark.parametrize(("paragraph", "balloons", "caption"), DIALOGUE)
def test_dialogue_becomes_balloons(
    paragraph: str, balloons: list[tuple[str | None, str]], caption: str | None
) -> None:
    panels = list(segment(paragraph).panels())
    got = [(b.speaker, b.text) for p in panels for b in p.balloons]
    assert got == balloons
    captions = [p.caption for p in panels if p.caption]
    assert captions == ([caption] if caption else [])
    for panel in panels:
        for name in {s for s, _ in balloons if s}:
            assert name in panel.characters


def test_unattributed_reply_alternates_between_two_speakers() -> None:
    text = '"Are you coming?" asked Anna.\n\n"No," said Tom.\n\n"Why not?"\n\n"Because."'
    speakers = [b.speaker for p in segment(text).panels() for b in p.balloons]
    assert speakers == ["Anna", "Tom", "Anna", "Tom"]


def test_characters_mentioned_by_name_appear_in_the_panel() -> None:
    text = '"Hello," said Anna.\n\n"Hi," said Tom.\n\nAnna and Tom walked down to the river.'
    last = list(segment(text).panels())[-1]
    assert last.caption == "Anna and Tom walked down to the river."
    assert last.characters == ["Anna", "Tom"]


# --- lengths ----------------------------------------------------------------------------


def test_long_paragraphs_split_into_bounded_captions_without_losing_words() -> None:
    sentence = (
        "The rain came down over the harbour, over the boats and the nets and the tired men "
        "who mended them, over the roofs and the chimneys and the one lit window at the end "
        "of the street where Anna sat waiting for a letter that would not come"
    )
    paragraph = " ".join([sentence + "."] * 4 + ["Supercalifragilistic" * 12 + "."])
    panels = list(segment(paragraph).panels())
    captions = [p.caption or "" for p in panels]
    assert len(panels) > 4
    assert all(0 < len(c) <= CAPTION_MAX_CHARS for c in captions)
    joined = " ".join(captions).replace("\u2026", " ").replace("- ", "").replace("-", "")
    assert joined.replace(",", "").split() == paragraph.replace(",", "").split()
    # A sentence running on into the next panel is marked with ellipses on both sides.
    assert captions[0].endswith("\u2026") and captions[1].startswith("\u2026")


def test_long_speech_splits_into_bounded_balloons() -> None:
    speech = " ".join(f"This is sentence number {i} of a very long speech." for i in range(20))
    panels = list(segment(f'"{speech}" said Anna.').panels())
    balloons = [b for p in panels for b in p.balloons]
    assert all(len(b.text) <= BALLOON_MAX_CHARS for b in balloons)
    assert all(b.speaker == "Anna" for b in balloons)
    assert all(len(p.balloons) <= 2 for p in panels)
    assert " ".join(b.text for b in balloons).split() == speech.split()


# --- identity and determinism -------------------------------------------------------------

STORY = """Chapter 1

The kitchen was warm. Anna stood at the window.

"Is it raining?" asked Tom.

"Not yet," said Anna.

* * *

Later that night they walked to the harbour under the moon.

Chapter 2

The forest was quiet.
"""


def test_panels_are_numbered_in_reading_order() -> None:
    script = segment(STORY)
    panels = list(script.panels())
    assert [p.number for p in panels] == list(range(1, len(panels) + 1))
    assert script.panel_count == len(panels)
    assert [(p.chapter, p.scene) for p in panels] == [(1, 1), (1, 1), (1, 2), (2, 1)]
    # A short caption and the dialogue that follows it share a panel.
    assert panels[0].caption == "The kitchen was warm. Anna stood at the window."
    assert panels[0].balloons == [Balloon("Tom", "Is it raining?")]
    assert script.chapter_titles() == {1: "Chapter 1", 2: "Chapter 2"}


def test_segmentation_is_deterministic() -> None:
    first, second = segment(STORY), segment(STORY)
    assert first == second
    seeds = [p.seed for p in first.panels()]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [p.seed for p in segment(STORY.replace("\n", "\r\n")).panels()]


def test_panel_round_trips_through_a_dict() -> None:
    panel = Panel(
        number=3,
        chapter=1,
        scene=2,
        caption="Night.",
        balloons=[Balloon("Anna", "Hi.")],
        characters=["Anna"],
        seed=42,
        setting="sea",
        time_of_day="night",
    )
    assert Panel.from_dict(panel.to_dict()) == panel


@pytest.mark.parametrize("bad", [{}, {"number": 1}, {"number": 1, "seed": 2, "balloons": [{}]}])
def test_panel_from_a_malformed_dict_fails_clearly(bad: dict) -> None:
    with pytest.raises(ValueError, match="not a panel"):
        Panel.from_dict(bad)
