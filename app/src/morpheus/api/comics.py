"""The JSON API for programmatic clients: submit a novel, follow it, fetch the comic."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from morpheus.api.auth import require_api_key
from morpheus.api.errors import error_responses
from morpheus.db.idempotency_keys import IDEMPOTENCY_KEY_RE, MAX_IDEMPOTENCY_KEY_LENGTH
from morpheus.db.models import ApiKey, Comic, ComicStatus
from morpheus.services.comics import archive, cancel_comic, get_comic, page_image
from morpheus.services.context import AppContext, get_context
from morpheus.services.request_limits import limit_submissions
from morpheus.services.responses import binary_response
from morpheus.services.submission import Submission, check_idempotency_key, submit_comic
from morpheus.services.uploads import ComicRequest, read_submission

# Every operation may answer these; each adds its own (404, 409, ...).
router = APIRouter(prefix="/v1/comics", tags=["comics"], responses=error_responses(401, 429, 503))

Context = Annotated[AppContext, Depends(get_context)]
Key = Annotated[ApiKey, Depends(require_api_key)]

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Set on the answer to a repeated submission (the first one's answer, nothing new made).
REPLAYED_HEADER = "Idempotent-Replayed"


class ComicLinks(BaseModel):
    self: str
    cancel: str
    pages: list[str]
    pdf: str | None
    cbz: str | None


class ComicStatusOut(BaseModel):
    id: uuid.UUID
    title: str
    status: str
    stage: str
    progress: float
    attempts: int
    word_count: int
    page_count: int | None
    timings: dict[str, float]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: ComicLinks


class Accepted(BaseModel):
    id: uuid.UUID
    status: str
    status_url: str


def comic_url(comic_id: uuid.UUID | str) -> str:
    return f"/v1/comics/{comic_id}"


def status_body(comic: Comic, page_numbers: list[int]) -> ComicStatusOut:
    base = comic_url(comic.id)
    done = comic.status == ComicStatus.COMPLETED.value
    return ComicStatusOut(
        id=comic.id,
        title=comic.title,
        status=comic.status,
        stage=comic.stage,
        progress=comic.progress,
        attempts=comic.attempts,
        word_count=comic.word_count,
        page_count=comic.page_count,
        timings=dict(comic.timings or {}),
        error=comic.error,
        created_at=comic.created_at,
        started_at=comic.started_at,
        finished_at=comic.finished_at,
        links=ComicLinks(
            self=base,
            cancel=f"{base}/cancel",
            pages=[f"{base}/pages/{n}" for n in page_numbers] if done else [],
            pdf=f"{base}.pdf" if done else None,
            cbz=f"{base}.cbz" if done else None,
        ),
    )


def self_contained_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` written in place.

    Pydantic refers to nested models as ``#/$defs/Name``, which, inside an OpenAPI
    document, points at the document's root, where there is no ``$defs``.
    """
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {key: value for key, value in node.items() if key != "$ref"}
                return {**inline(definitions[ref.removeprefix("#/$defs/")]), **rest}
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(schema)  # type: ignore[no-any-return]


LIMIT_NOTE = " (the JSON body's `limit` names the limit passed, a setting's name)"
ERROR_DESCRIPTIONS_413 = (
    "The novel is larger than a limit: the upload, what an EPUB unpacks to, its text" + LIMIT_NOTE
)
ERROR_DESCRIPTIONS_422 = (
    "Empty, binary or undecodable text, a damaged or over-compressed EPUB, a novel that "
    "takes too long to read, a bad or reused Idempotency-Key, or bad fields (a NUL "
    "character or an unpaired surrogate in a title or text, for one)" + LIMIT_NOTE
)

SUBMIT_BODY = {
    "parameters": [
        {
            "name": IDEMPOTENCY_KEY_HEADER,
            "in": "header",
            "required": False,
            "description": "Any unique value per novel (a UUID, say). A submission repeated "
            "with the same key gets the first one's answer and makes no second comic; the "
            "same key with another body is a 422. Keys are per API key.",
            "schema": {
                "type": "string",
                "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
                "pattern": IDEMPOTENCY_KEY_RE.pattern,
            },
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": self_contained_schema(ComicRequest)},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["title"],
                    "properties": {
                        "title": {"type": "string", "maxLength": 300},
                        "file": {"type": "string", "format": "binary"},
                        "text": {"type": "string"},
                        "page_format": {"type": "string", "enum": ["a4", "letter", "a5"]},
                    },
                }
            },
        },
    },
}


SUBMIT_ERRORS = error_responses(
    400,
    413,
    415,
    422,
    e413=ERROR_DESCRIPTIONS_413,
    e422=ERROR_DESCRIPTIONS_422,
)
# One comic's operations: 404 when it is not this API key's (422, in the same shape, only
# should a request get past the path's own checks without being valid).
COMIC_ERRORS = error_responses(404, 422)
# ... and 409 when the comic's state does not allow the operation.
STATE_ERRORS = error_responses(404, 409, 422)


@router.post(
    "",
    status_code=202,
    response_model=Accepted,
    openapi_extra=SUBMIT_BODY,
    responses=SUBMIT_ERRORS,
)
async def submit(request: Request, response: Response, ctx: Context, api_key: Key) -> Accepted:
    """Submit a novel as JSON ``{"title", "text", "style"}`` or as a multipart upload
    (fields ``title``, ``file`` (.txt/.md/.epub) or ``text``, ``page_format``).

    With an ``Idempotency-Key`` header, repeating the request gives the same answer and
    the same comic."""
    await limit_submissions(ctx, request, f"key:{api_key.id}")
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is not None:
        check_idempotency_key(key)
    upload = await read_submission(request, ctx.settings.max_upload_bytes)
    submitted = await submit_comic(
        ctx,
        Submission(
            title=upload.title,
            data=upload.data,
            filename=upload.filename,
            content_type=upload.content_type,
            options=upload.style.to_options(),
            api_key_id=api_key.id,
            client_addr=request.client.host if request.client else None,
            idempotency_key=key,
        ),
    )
    url = comic_url(submitted.comic.id)
    response.headers["Location"] = url
    if submitted.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    # "queued", as the first answer said: a replay answers the same, whatever came since.
    return Accepted(id=submitted.comic.id, status=ComicStatus.QUEUED.value, status_url=url)


@router.get("/{comic_id:uuid}.pdf", response_class=Response, responses=STATE_ERRORS)
async def pdf(comic_id: uuid.UUID, request: Request, ctx: Context, api_key: Key) -> Response:
    data = await archive(ctx, str(comic_id), "pdf", api_key)
    disposition = f'attachment; filename="comic-{comic_id}.pdf"'
    return binary_response(request, data, "application/pdf", **{"Content-Disposition": disposition})


@router.get("/{comic_id:uuid}.cbz", response_class=Response, responses=STATE_ERRORS)
async def cbz(comic_id: uuid.UUID, request: Request, ctx: Context, api_key: Key) -> Response:
    data = await archive(ctx, str(comic_id), "cbz", api_key)
    disposition = f'attachment; filename="comic-{comic_id}.cbz"'
    return binary_response(
        request, data, "application/vnd.comicbook+zip", **{"Content-Disposition": disposition}
    )


@router.get("/{comic_id:uuid}", response_model=ComicStatusOut, responses=COMIC_ERRORS)
async def status(comic_id: uuid.UUID, ctx: Context, api_key: Key) -> ComicStatusOut:
    # Clients poll it: the hot standby may answer, a few seconds behind at most; a comic
    # it has not replayed yet is looked for on the primary (the poll after a submission).
    view = await get_comic(ctx, str(comic_id), api_key, standby=True)
    return status_body(view.comic, [page.number for page in view.pages])


@router.get("/{comic_id:uuid}/pages/{number:int}", response_class=Response, responses=COMIC_ERRORS)
async def page(
    comic_id: uuid.UUID, number: int, request: Request, ctx: Context, api_key: Key
) -> Response:
    data = await page_image(ctx, str(comic_id), number, api_key)
    return binary_response(request, data, "image/png")


async def _cancel(comic_id: uuid.UUID, ctx: AppContext, api_key: ApiKey) -> dict[str, Any]:
    comic = await cancel_comic(ctx, str(comic_id), api_key)
    return {"id": str(comic.id), "status": comic.status, "status_url": comic_url(comic.id)}


@router.post("/{comic_id:uuid}/cancel", status_code=202, responses=STATE_ERRORS)
async def cancel(comic_id: uuid.UUID, ctx: Context, api_key: Key) -> dict[str, Any]:
    """Cancel a queued or running comic (409 when it has already finished)."""
    return await _cancel(comic_id, ctx, api_key)


@router.delete("/{comic_id:uuid}", status_code=202, responses=STATE_ERRORS)
async def delete(comic_id: uuid.UUID, ctx: Context, api_key: Key) -> dict[str, Any]:
    """Cancel a queued or running comic, as ``POST /v1/comics/{id}/cancel`` does (409
    when it has already finished)."""
    return await _cancel(comic_id, ctx, api_key)
