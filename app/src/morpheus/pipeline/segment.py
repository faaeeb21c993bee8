"""Segmentation of a novel into chapters, scenes and comic panels.

The result is a :class:`~morpheus.pipeline.script.Script`: chapters hold scenes, scenes
hold panels. Narration becomes captions, quoted dialogue becomes speech balloons (with
the speaker where the text names one). The function is pure and deterministic: the same
text always gives the same script, seeds included. A long novel checks the stop flag
(:mod:`morpheus.cancellation`) at every paragraph. These heuristics are all this module
holds; the data model is :mod:`morpheus.pipeline.script`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from morpheus import cancellation
from morpheus.pipeline.script import (
    DEFAULT_SETTING,
    DEFAULT_TIME,
    Balloon,
    Chapter,
    Panel,
    Scene,
    Script,
)

CAPTION_MAX_CHARS = 180
BALLOON_MAX_CHARS = 110
BALLOONS_PER_PANEL = 2
CHARACTERS_PER_PANEL = 4
HEADING_MAX_CHARS = 80
SUBTITLE_MAX_CHARS = 60
PENDING_CAPTION_CHARS = 100


# --- headings and breaks --------------------------------------------------------------

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    "eighty|ninety|hundred"
)
_CHAPTER_RE = re.compile(
    rf"^(?:chapter|part|book)\s+(?:\d+|[ivxlcdm]+|(?:(?:{_NUMBER_WORDS})[\s-]*)+)\b"
    r"(?:\s*[.:\-\u2013\u2014]\s*|\s+)?(.*)$",
    re.IGNORECASE,
)
_NAMED_CHAPTER_RE = re.compile(r"^(?:prologue|epilogue|interlude)\b.*$", re.IGNORECASE)
_MD_HEADING_RE = re.compile(r"^(#{1,2})\s+(\S.*?)\s*#*\s*$")
_MD_SUBHEADING_RE = re.compile(r"^#{3,6}\s+\S.*$")
_SCENE_BREAK_RE = re.compile(r"^\s*(?:(?:\*\s*){3,}|#|(?:-\s*){3,}|(?:~\s*){3,}|(?:=\s*){3,})\s*$")
_TIME_SHIFT_RE = re.compile(
    r"^(?:the\s+(?:next|following)\s+(?:morning|day|evening|night|week|month|year)|"
    r"(?:hours|days|weeks|months|years)\s+later|later\s+that\s+(?:day|night|evening|morning)|"
    r"that\s+(?:night|evening|afternoon)|meanwhile|by\s+(?:nightfall|dawn|morning|evening)|"
    r"at\s+(?:dawn|dusk|midnight|noon)|"
    # place shifts
    r"elsewhere|back\s+(?:at|in|on)\s+the|across\s+(?:town|the\s+city)|far\s+away)\b",
    re.IGNORECASE,
)

# --- settings ---------------------------------------------------------------------------

_SETTING_WORDS: dict[str, tuple[str, ...]] = {
    "forest": ("forest", "woods", "wood", "trees", "pines", "oak", "thicket", "grove", "clearing"),
    "sea": (
        "sea",
        "ocean",
        "shore",
        "beach",
        "waves",
        "harbour",
        "harbor",
        "ship",
        "deck",
        "boat",
        "coast",
        "bay",
        "tide",
        "sand",
        "water",
        "lighthouse",
        "gulls",
    ),
    "city": (
        "street",
        "city",
        "town",
        "alley",
        "market",
        "square",
        "avenue",
        "station",
        "traffic",
        "rooftop",
        "rooftops",
        "bridge",
    ),
    "mountain": (
        "mountain",
        "mountains",
        "peak",
        "cliff",
        "snow",
        "ridge",
        "summit",
        "pass",
        "glacier",
        "rocks",
    ),
    "field": (
        "field",
        "fields",
        "meadow",
        "hill",
        "hills",
        "road",
        "farm",
        "garden",
        "valley",
        "river",
        "grass",
        "orchard",
    ),
    "interior": (
        "room",
        "kitchen",
        "house",
        "hall",
        "library",
        "office",
        "tavern",
        "inn",
        "bedroom",
        "cellar",
        "church",
        "castle",
        "table",
        "fireplace",
        "door",
        "corridor",
        "study",
        "parlour",
        "parlor",
        "attic",
        "stairs",
        "chamber",
        "window",
        "bed",
        "desk",
    ),
}
_NIGHT_WORDS = (
    "night",
    "midnight",
    "moon",
    "moonlight",
    "stars",
    "darkness",
    "dark",
    "lantern",
    "candle",
    "nightfall",
    "dusk",
)
_WORD_RE = re.compile(r"[a-z]+")

# --- dialogue ---------------------------------------------------------------------------

_QUOTE_RE = re.compile(r"\"([^\"]+)\"|\u201c([^\u201c\u201d]+)\u201d")
# British style: U+2018 ... U+2019, told apart from apostrophes (as in "don-t" written with
# U+2019) by what surrounds them.
_SINGLE_QUOTE_RE = re.compile(r"(?<!\w)\u2018(.+?)\u2019(?!\w)")
_VERBS = (
    "said|says|asked|asks|replied|replies|whispered|whispers|shouted|shouts|cried|cries|"
    "answered|answers|called|calls|muttered|mutters|added|adds|began|begins|continued|"
    "yelled|yells|murmured|murmurs|snapped|snaps|laughed|laughs|exclaimed|exclaims|"
    "insisted|insists|demanded|demands|told|tells|agreed|agrees|breathed|sighed|warned|"
    "protested|explained|repeated|wondered|growled|hissed|declared|announced|pleaded"
)
_TITLES = r"Mr|Mrs|Ms|Dr|Miss|Lady|Lord|Sir|Captain|Aunt|Uncle|Father|Mother"
_NAME = rf"(?:(?:{_TITLES})\.?\s+)?[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?"
_AFTER_VERB_NAME = re.compile(rf"^\s*[,.!?]?\s*(?:{_VERBS})\s+(?P<name>{_NAME})\b")
_AFTER_NAME_VERB = re.compile(rf"^\s*[,.!?]?\s*(?P<name>{_NAME})\s+(?:{_VERBS})\b")
_BEFORE_NAME_VERB = re.compile(rf"(?P<name>{_NAME})\s+(?:{_VERBS})(?:\s+\w+){{0,3}}\s*[,:]?\s*$")
_ATTRIBUTION_ONLY = re.compile(
    rf"^\s*[,.!?]?\s*(?:(?:{_VERBS})\s+(?:{_NAME}|he|she|they|I|we)|"
    rf"(?:{_NAME}|he|she|they|I|we)\s+(?:{_VERBS}))(?:\s+\w+){{0,3}}\s*[,.:;!?]?\s*$",
)
_NOT_NAME_WORDS = (
    "He She They It I We You His Her Their Its The A An And But Then When There This That "
    "Someone Everyone Nobody Somebody Mr Mrs Ms Dr Miss Lady Lord Sir Captain What Who Why "
    "How Where Yes No Oh Well"
)
_NOT_NAMES = frozenset(_NOT_NAME_WORDS.split())
_SENTENCE_RE = re.compile(r"[^.!?\u2026]+(?:[.!?\u2026]+[\"'\u201d\u2019)]*|$)")
_SPACE_RE = re.compile(r"\s+")


def _clean(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def _heading_title(paragraph: str) -> str | None:
    """Return the chapter title if this paragraph is a chapter heading."""
    if "\n" in paragraph:
        return None
    line = paragraph.strip()
    if not line or len(line) > HEADING_MAX_CHARS:
        return None
    md = _MD_HEADING_RE.match(line)
    if md:
        return _clean(md.group(2))
    chapter = _CHAPTER_RE.match(line)
    if chapter:
        rest = chapter.group(1).strip()
        # "Chapter 3 explained the rules." is a sentence, not a heading.
        if rest and (rest[0].islower() or (rest[-1] in ".!?" and len(rest.split()) > 4)):
            return None
        return _clean(line.rstrip("."))
    if _NAMED_CHAPTER_RE.match(line):
        return _clean(line.rstrip("."))
    return None


def _is_subtitle(line: str) -> bool:
    """A short line without sentence punctuation, like "The Boy Who Lived"."""
    return len(line) <= SUBTITLE_MAX_CHARS and not re.search(r"[.!?,;\"\u201c\u201d]\s*$", line)


def _is_scene_break(paragraph: str) -> bool:
    line = paragraph.strip()
    return bool(_SCENE_BREAK_RE.match(line) or _MD_SUBHEADING_RE.match(line))


def _split_blocks(text: str) -> list[str | None]:
    """Split text into paragraphs; ``None`` marks a gap of two or more blank lines."""
    blocks: list[str | None] = []
    current: list[str] = []
    blank_run = 0
    for raw_line in text.split("\n"):
        line = raw_line.rstrip()
        if not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            blank_run += 1
            continue
        if blank_run >= 3 and blocks:
            blocks.append(None)
        blank_run = 0
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def detect_setting(text: str) -> tuple[str, str]:
    """Return ``(setting, time_of_day)`` from the words of a scene."""
    counts = dict.fromkeys(_SETTING_WORDS, 0)
    night = 0
    for word in _WORD_RE.findall(text.lower()):
        for setting, words in _SETTING_WORDS.items():
            if word in words:
                counts[setting] += 1
        if word in _NIGHT_WORDS:
            night += 1
    best = max(counts.items(), key=lambda item: (item[1], item[0] == DEFAULT_SETTING))
    setting = best[0] if best[1] > 0 else DEFAULT_SETTING
    return setting, ("night" if night >= 2 else DEFAULT_TIME)


def _valid_name(name: str | None) -> str | None:
    if not name:
        return None
    words = name.split()
    if words[0].rstrip(".") in _NOT_NAMES and len(words) == 1:
        return None
    if words[-1] in _NOT_NAMES:
        return None
    return name


def _speaker_after(narration: str) -> str | None:
    match = _AFTER_VERB_NAME.match(narration) or _AFTER_NAME_VERB.match(narration)
    return _valid_name(match.group("name")) if match else None


def _speaker_before(narration: str, known: frozenset[str]) -> str | None:
    match = _BEFORE_NAME_VERB.search(narration)
    if match:
        return _valid_name(match.group("name"))
    # An action beat: 'Anna looked up. "..."' - the last sentence's subject speaks, if
    # it is a name the text uses for a speaker elsewhere (not "Suddenly the door...").
    sentences = [x.strip() for x in _SENTENCE_RE.findall(narration) if x.strip()]
    if sentences:
        beat = re.match(rf"(?P<name>{_NAME})\s+[a-z]+", sentences[-1])
        if beat and beat.group("name") in known:
            return beat.group("name")
    return None


def _split_paragraph(
    paragraph: str, known: frozenset[str] = frozenset()
) -> list[tuple[str, str, str | None]]:
    """Split a paragraph into ``(kind, text, speaker)`` parts, kind narration or speech.

    ``known`` are the names used as speakers elsewhere in the text."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    double = '"' in paragraph or "\u201c" in paragraph
    for match in (_QUOTE_RE if double else _SINGLE_QUOTE_RE).finditer(paragraph):
        if match.start() > pos:
            pieces.append(("narration", paragraph[pos : match.start()]))
        pieces.append(("speech", next((g for g in match.groups() if g), "")))
        pos = match.end()
    if pos < len(paragraph):
        pieces.append(("narration", paragraph[pos:]))

    parts: list[tuple[str, str, str | None]] = []
    for i, (kind, text) in enumerate(pieces):
        if kind == "speech":
            speaker = None
            if i + 1 < len(pieces):
                speaker = _speaker_after(pieces[i + 1][1])
            if speaker is None and i > 0:
                speaker = _speaker_before(pieces[i - 1][1], known)
            if speaker is None:
                # A second quote continuing an attributed one: "...," said Anna. "..."
                for j in range(i - 1, -1, -1):
                    if pieces[j][0] == "speech":
                        prev = parts[-1] if parts else None
                        between = pieces[j + 1][1] if j + 1 < i else ""
                        if prev and _ATTRIBUTION_ONLY.match(between):
                            speaker = next(
                                (p[2] for p in reversed(parts) if p[0] == "speech"), None
                            )
                        break
            spoken = _clean(text)
            if spoken.endswith(","):
                spoken = spoken[:-1] + "."
            parts.append(("speech", spoken, speaker))
        else:
            cleaned = _clean(text)
            has_speech = any(k == "speech" for k, _ in pieces)
            if has_speech and _ATTRIBUTION_ONLY.match(cleaned):
                continue
            if has_speech:
                cleaned = _strip_attribution(cleaned)
            if cleaned and re.search(r"[A-Za-z0-9]", cleaned):
                parts.append(("narration", cleaned, None))
    return [p for p in parts if p[1]]


def _strip_attribution(text: str) -> str:
    """Remove a leading "said Anna," / trailing "Anna said," around quotes."""
    text = re.sub(
        rf"^[,.!?]?\s*(?:(?:{_VERBS})\s+(?:{_NAME}|he|she|they)|(?:{_NAME}|he|she|they)\s+"
        rf"(?:{_VERBS}))\s*[,.;]?\s*",
        "",
        text,
    )
    text = re.sub(rf"\s*,?\s*{_NAME}\s+(?:{_VERBS})\s*[,:]?\s*$", "", text)
    text = text.strip(" ,;:")
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?\u2026\"'\u201d":
        text += "."
    return text


def _clauses(sentence: str, limit: int) -> list[str]:
    """Words of a long sentence, regrouped into clauses where the clauses fit."""
    clauses = re.split(r"(?<=[,;:\u2014])\s+", sentence)
    out: list[str] = []
    for clause in clauses:
        if len(clause) <= limit:
            out.append(clause)
        else:
            out.extend(clause.split(" "))
    return out


def _chunks(text: str, limit: int) -> list[str]:
    """Split text at sentence (then word) boundaries into pieces of at most ``limit``."""
    sentences = [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]
    if not sentences:
        sentences = [text.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        if len(sentence) <= limit:
            pieces.append(sentence)
            continue
        # Too long: break at clause boundaries first, then between words.
        line = ""
        for word in _clauses(sentence, limit):
            while len(word) > limit:
                if line:
                    pieces.append(line)
                    line = ""
                pieces.append(word[: limit - 1] + "-")
                word = word[limit - 1 :]
            candidate = f"{line} {word}".strip()
            if len(candidate) > limit:
                pieces.append(line)
                line = word
            else:
                line = candidate
        if line:
            pieces.append(line)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}".strip()
        if current and len(candidate) > limit:
            chunks.append(current)
            current = piece
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


ELLIPSIS = "\u2026"
_SENTENCE_END = ".!?\u2026\"'\u201d\u2019)"


def _continued(chunks: list[str]) -> list[str]:
    """Mark a sentence running on into the next panel with ellipses, as letterers do."""
    out: list[str] = []
    carry = False
    for i, chunk in enumerate(chunks):
        text = ELLIPSIS + chunk if carry else chunk
        carry = i < len(chunks) - 1 and chunk[-1] not in _SENTENCE_END
        if carry:
            text = text.rstrip(",;:\u2014-") + ELLIPSIS if not text.endswith("-") else text
            carry = not chunk.endswith("-")
        out.append(text)
    return out


@dataclass
class _PanelDraft:
    caption: str | None = None
    balloons: list[Balloon] = field(default_factory=list)
    mentioned: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return self.caption is None and not self.balloons


class _Builder:
    def __init__(self, known_names: list[str]) -> None:
        self.chapters: list[Chapter] = []
        self.known_names = known_names
        self.known = frozenset(known_names)
        self._name_res = [(n, re.compile(rf"\b{re.escape(n)}\b")) for n in known_names]
        self.panel_number = 0
        self.scene_text: list[str] = []
        self.scene_drafts: list[_PanelDraft] = []
        self.pending: _PanelDraft | None = None
        self.recent_speakers: list[str] = []
        self.last_was_dialogue = False

    # chapters and scenes
    def start_chapter(self, title: str | None) -> None:
        self.end_scene()
        if self.chapters and not self.chapters[-1].scenes:
            # A heading with nothing under it (a book title, a part heading) gives way.
            self.chapters.pop()
        index = len(self.chapters) + 1
        self.chapters.append(Chapter(index=index, title=title or f"Chapter {index}"))

    def end_scene(self) -> None:
        self.flush_pending()
        self.recent_speakers = []
        self.last_was_dialogue = False
        if not self.scene_drafts:
            self.scene_text = []
            return
        if not self.chapters:
            self.chapters.append(Chapter(index=1, title="Chapter 1"))
        chapter = self.chapters[-1]
        setting, time_of_day = detect_setting(" ".join(self.scene_text))
        scene = Scene(index=len(chapter.scenes) + 1, setting=setting, time_of_day=time_of_day)
        for draft in self.scene_drafts:
            self.panel_number += 1
            characters: list[str] = []
            for name in [b.speaker for b in draft.balloons if b.speaker] + draft.mentioned:
                if name not in characters:
                    characters.append(name)
            characters = characters[:CHARACTERS_PER_PANEL]
            seed = _seed(
                chapter.index,
                scene.index,
                self.panel_number,
                draft.caption,
                [(b.speaker, b.text) for b in draft.balloons],
                setting,
            )
            scene.panels.append(
                Panel(
                    number=self.panel_number,
                    chapter=chapter.index,
                    scene=scene.index,
                    caption=draft.caption,
                    balloons=list(draft.balloons),
                    characters=characters,
                    seed=seed,
                    setting=setting,
                    time_of_day=time_of_day,
                )
            )
        chapter.scenes.append(scene)
        self.scene_drafts = []
        self.scene_text = []

    def _mentions(self, text: str) -> list[str]:
        return [name for name, pattern in self._name_res if pattern.search(text)]

    def flush_pending(self) -> None:
        if self.pending is not None:
            self.scene_drafts.append(self.pending)
            self.pending = None

    def add_paragraph(self, paragraph: str) -> None:
        self.scene_text.append(paragraph)
        mentioned = self._mentions(paragraph)
        parts = _split_paragraph(paragraph, self.known)
        # A short caption-only panel from the paragraph before may take this paragraph's
        # first lines of dialogue, as a comic would ("Anna stopped." + her balloon).
        draft = _PanelDraft()
        if self.pending is not None:
            if parts and parts[0][0] == "speech":
                draft = self.pending
                mentioned = list(dict.fromkeys(self.pending.mentioned + mentioned))
            else:
                self.scene_drafts.append(self.pending)
            self.pending = None

        def flush() -> None:
            nonlocal draft
            if not draft.empty():
                draft.mentioned = mentioned
                self.scene_drafts.append(draft)
            draft = _PanelDraft()

        speech_only = all(kind == "speech" for kind, _, _ in parts)
        drafts_before = len(self.scene_drafts)
        for kind, text, speaker in parts:
            if kind == "speech":
                if speaker is None and speech_only and self.last_was_dialogue:
                    # Unattributed reply in a two-way exchange: the other one speaks.
                    speaker = self._other_speaker()
                if speaker:
                    self._heard(speaker)
            if kind == "narration":
                for chunk in _continued(_chunks(text, CAPTION_MAX_CHARS - 2)):
                    if not draft.empty():
                        flush()
                    draft.caption = chunk
            else:
                for chunk in _continued(_chunks(text, BALLOON_MAX_CHARS - 2)):
                    if len(draft.balloons) >= BALLOONS_PER_PANEL:
                        flush()
                    draft.balloons.append(Balloon(speaker=speaker, text=chunk))
        self.last_was_dialogue = bool(parts) and any(k == "speech" for k, _, _ in parts)
        whole_paragraph = len(self.scene_drafts) == drafts_before
        if (
            whole_paragraph
            and draft.caption
            and not draft.balloons
            and len(draft.caption) <= PENDING_CAPTION_CHARS
        ):
            draft.mentioned = mentioned
            self.pending = draft
        else:
            flush()

    def _heard(self, speaker: str) -> None:
        if self.recent_speakers and self.recent_speakers[-1] == speaker:
            return
        self.recent_speakers = [*self.recent_speakers[-1:], speaker]

    def _other_speaker(self) -> str | None:
        if len(self.recent_speakers) == 2:
            return self.recent_speakers[0]
        return None


def _known_speakers(paragraphs: list[str]) -> list[str]:
    """Names that the text uses as speakers, in order of first appearance."""
    names: list[str] = []
    for paragraph in paragraphs:
        if not any(mark in paragraph for mark in ('"', "\u201c", "\u2018")):
            continue
        for _kind, _text, speaker in _split_paragraph(_clean(paragraph)):
            if speaker and speaker not in names:
                names.append(speaker)
    return names


def segment(text: str) -> Script:
    """Turn a novel's text into a :class:`Script` of chapters, scenes and panels."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    blocks = _split_blocks(text)
    builder = _Builder(_known_speakers([b for b in blocks if b is not None]))
    for block in blocks:
        cancellation.check()
        if block is None:
            builder.end_scene()
            continue
        title = _heading_title(block)
        if title is not None:
            builder.start_chapter(title)
            continue
        first, _, rest = block.partition("\n")
        title = _heading_title(first)
        if title is not None and rest.strip() and not rest.strip()[0].islower():
            # "CHAPTER I" with its subtitle on the next line, or with the text right below.
            if "\n" not in rest.strip() and _is_subtitle(rest.strip()):
                builder.start_chapter(f"{title}: {_clean(rest)}")
                continue
            builder.start_chapter(title)
            block = rest
        if _is_scene_break(block):
            builder.end_scene()
            continue
        paragraph = _clean(block)
        if (builder.scene_drafts or builder.pending) and _TIME_SHIFT_RE.match(paragraph):
            builder.end_scene()
        builder.add_paragraph(paragraph)
    builder.end_scene()
    chapters = [chapter for chapter in builder.chapters if chapter.scenes]
    return Script(chapters=chapters)
