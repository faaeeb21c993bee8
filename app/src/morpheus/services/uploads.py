"""Read a novel submission from a request: JSON or multipart, never past the size limit.

The body is counted while it arrives: a declared Content-Length over the limit is
refused before reading anything, and a body that grows past it is refused at the chunk
that crosses the line, so an oversized upload is never buffered whole.

Text fields are checked here, at the boundary, so that nothing PostgreSQL cannot store
gets further: a NUL character or an unpaired surrogate anywhere in the title or the
novel's text is a 422 naming the field. A title may not hold other control characters
either; its runs of white space (tabs, line breaks) become one space.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from morpheus.services.errors import Rejected

# Room for the form fields, multipart boundaries or JSON quoting around the novel itself.
ENVELOPE_BYTES = 64 * 1024
MAX_TITLE_LENGTH = 300


# Page formats in pixels at 150 dpi: what the page composer draws on.
PAGE_FORMATS: dict[str, tuple[int, int]] = {
    "a4": (1240, 1754),
    "letter": (1275, 1650),
    "a5": (874, 1240),
}
MIN_SIZE, MAX_SIZE = 16, 4096


class StyleOptions(BaseModel):
    """How the comic is drawn: a page format, or explicit page and panel sizes (pixels)."""

    model_config = ConfigDict(extra="forbid")

    page_format: Literal["a4", "letter", "a5"] = "a4"
    page_width: int | None = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE)
    page_height: int | None = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE)
    panel_width: int | None = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE)
    panel_height: int | None = Field(default=None, ge=MIN_SIZE, le=MAX_SIZE)

    def to_options(self) -> dict[str, int | str]:
        """The comic's stored options, as the comic job reads them."""
        width, height = PAGE_FORMATS[self.page_format]
        options: dict[str, int | str] = {
            "page_format": self.page_format,
            "page_width": self.page_width or width,
            "page_height": self.page_height or height,
        }
        if self.panel_width:
            options["panel_width"] = self.panel_width
        if self.panel_height:
            options["panel_height"] = self.panel_height
        return options


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _character(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def unstorable_character(value: str) -> str | None:
    """Why ``value`` cannot be stored (a NUL or an unpaired surrogate), or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    ch, position = found.group(), found.start()
    kind = "NUL characters" if ch == "\x00" else "unpaired surrogates"
    return f"must not contain {kind} ({_character(ch)} at position {position})"


def title_problem(value: str) -> str | None:
    """Why ``value`` cannot be a title, or None: what :func:`unstorable_character` refuses,
    and control characters other than white space."""
    problem = unstorable_character(value)
    if problem is not None:
        return problem
    for position, ch in enumerate(value):
        if unicodedata.category(ch) == "Cc" and not ch.isspace():
            return f"must not contain control characters ({_character(ch)} at position {position})"
    return None


def normalise_title(value: str) -> str:
    """A title with its runs of white space made one space, and none at either end."""
    return " ".join(value.split())


class ComicRequest(BaseModel):
    """A novel sent as JSON."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=MAX_TITLE_LENGTH)
    text: str
    style: StyleOptions = Field(default_factory=StyleOptions)

    # Before pydantic's own checks, which cannot say where a surrogate is.
    @field_validator("title", mode="before")
    @classmethod
    def _title_characters(cls, value: Any) -> Any:
        problem = title_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise PydanticCustomError("title_characters", problem)
        return value

    @field_validator("text", mode="before")
    @classmethod
    def _text_characters(cls, value: Any) -> Any:
        problem = unstorable_character(value) if isinstance(value, str) else None
        if problem is not None:
            raise PydanticCustomError("text_characters", problem)
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = normalise_title(value)
        if not value:
            raise PydanticCustomError("title_blank", "must not be blank")
        return value


class NovelUpload(BaseModel):
    """A parsed submission: what goes to :func:`morpheus.services.submission.submit_comic`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    title: str
    data: bytes
    filename: str | None
    content_type: str | None
    style: StyleOptions
    # The form's text fields as typed (to show the form again after a refusal).
    fields: dict[str, str] = Field(default_factory=dict)
    # The storefront form's one-time token (its idempotency key), when it sent one.
    form_token: str | None = None


def body_limit(max_upload_bytes: int) -> int:
    return max_upload_bytes + ENVELOPE_BYTES


def _too_large(limit: int) -> Rejected:
    return Rejected(
        f"The request is larger than the {limit // 1024} KiB we accept for a novel.",
        status_code=413,
    )


def limited_receive(request: Request, limit: int) -> Receive:
    """The request's ``receive``, raising 413 once more than ``limit`` bytes arrived."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    received = 0
    receive = request.receive

    async def counting_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return counting_receive


async def read_json(request: Request, limit: int) -> NovelUpload:
    receive = limited_receive(request, limit)
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejected("The request was interrupted.", status_code=400)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    try:
        payload: Any = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise Rejected("The body is not valid JSON.", status_code=422) from None
    try:
        parsed = ComicRequest.model_validate(payload)
    except ValidationError as exc:
        raise Rejected(describe(exc), status_code=422) from None
    return NovelUpload(
        title=parsed.title,
        data=parsed.text.encode("utf-8"),
        filename="novel.txt",
        content_type="text/plain",
        style=parsed.style,
    )


async def read_form(request: Request, limit: int) -> NovelUpload:
    """A multipart (or urlencoded) form: ``title``, ``file`` or ``text``, ``page_format``."""
    limited = Request(request.scope, receive=limited_receive(request, limit))
    async with limited.form(max_files=1, max_fields=10, max_part_size=limit) as form:
        token = form.get("form_token")
        fields = {
            key: value
            for key in ("title", "text", "page_format")
            if isinstance(value := form.get(key), str)
        }
        for name, check in (("title", title_problem), ("text", unstorable_character)):
            problem = check(fields.get(name, ""))
            if problem is not None:
                raise Rejected(f"{name}: {problem}", status_code=422, fields=fields)
        title = fields.get("title", "")
        upload = form.get("file")
        pasted = fields.get("text")
        style_fields = {key: fields[key] for key in ("page_format",) if fields.get(key)}
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(limit + 1)
            filename, content_type = upload.filename, upload.content_type
        elif isinstance(pasted, str) and pasted.strip():
            data, filename, content_type = pasted.encode("utf-8"), "novel.txt", "text/plain"
        else:
            raise Rejected(
                "Please paste the novel's text or choose a .txt, .md or .epub file.",
                status_code=422,
                fields=fields,
            )
    title = normalise_title(title)
    if not title:
        raise Rejected("Please give the comic a title.", status_code=422, fields=fields)
    if len(title) > MAX_TITLE_LENGTH:
        raise Rejected(
            f"The title is too long (at most {MAX_TITLE_LENGTH} characters).",
            status_code=422,
            fields=fields,
        )
    try:
        style = StyleOptions.model_validate(style_fields)
    except ValidationError as exc:
        raise Rejected(describe(exc), status_code=422, fields=fields) from None
    return NovelUpload(
        title=title,
        data=data,
        filename=filename,
        content_type=content_type,
        style=style,
        fields=fields,
        form_token=token if isinstance(token, str) and token else None,
    )


async def read_submission(request: Request, max_upload_bytes: int) -> NovelUpload:
    """The novel from a JSON or form body; :class:`Rejected` with 413/415/422 otherwise."""
    limit = body_limit(max_upload_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await read_json(request, limit)
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await read_form(request, limit)
    raise Rejected(
        "Send the novel as JSON (application/json) or as a form upload (multipart/form-data).",
        status_code=415,
    )


def describe(error: ValidationError) -> str:
    """One readable sentence per problem: "title: String should have at least 1 character"."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    # A field's name comes from the client: an unpaired surrogate in it cannot be encoded.
    return "; ".join(parts).encode("utf-8", "backslashreplace").decode("utf-8")
