"""The storefront: submit a novel, watch it become a comic, read it, download it.

Each rendering of the form carries a fresh one-time token, sent back as the submission's
idempotency key: a double click or a resent form makes one comic, and shows it. The
token is also tied to the visitor's cookie (:mod:`morpheus.web.csrf`): a submission
from another site's page is refused (403, before anything is read), and so is one whose
token was not made for this browser (403, the form shown again with what was typed).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from morpheus.db.models import ComicStatus
from morpheus.services import comics
from morpheus.services.context import AppContext, get_context
from morpheus.services.errors import KeyReused, NotFound, ServiceError
from morpheus.services.request_limits import client_address, limit_by_address, limit_submissions
from morpheus.services.responses import binary_response
from morpheus.services.submission import Submission, submit_comic
from morpheus.services.uploads import read_submission
from morpheus.web.csrf import CROSS_SITE_MESSAGE, FormTokens, cross_site
from morpheus.web.pages import render

router = APIRouter(dependencies=[Depends(limit_by_address)])

Context = Annotated[AppContext, Depends(get_context)]

REFRESH_SECONDS = 3
PAGE_FORMAT_LABELS = {"a4": "A4", "letter": "US Letter", "a5": "A5 (small)"}
FORM_REUSED_MESSAGE = (
    "This form was already sent with another novel. We kept what you typed: send it again "
    "to make a new comic."
)
FORM_EXPIRED_MESSAGE = (
    "This form has expired or was not shown to this browser, so nothing was sent. We kept "
    "what you typed: send it again."
)


def form_tokens(request: Request) -> FormTokens:
    return request.app.state.form_tokens  # type: ignore[no-any-return]


def form_page(
    request: Request,
    ctx: AppContext,
    *,
    error: str | None = None,
    status_code: int = 200,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    """The form, with a new token for this visitor (whose cookie is set again)."""
    visitor, token = form_tokens(request).issue(request)
    response = render(
        request,
        "storefront/index.html",
        {
            "page_formats": PAGE_FORMAT_LABELS,
            "max_upload_mib": round(ctx.settings.max_upload_bytes / (1024 * 1024), 1),
            "form": {"title": "", "text": "", "page_format": "a4", **(values or {})},
            "form_token": token,
            "error": error,
        },
        status_code=status_code,
        # The token fits the cookie set here: no shared cache may hand it to another
        # browser (the browser's own may keep it: the back button keeps the same token).
        headers={"Cache-Control": "private"},
    )
    form_tokens(request).set_cookie(request, response, visitor)
    return response


def _kept(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k in ("title", "text", "page_format")}


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, ctx: Context) -> HTMLResponse:
    return form_page(request, ctx)


@router.post("/comics", response_class=HTMLResponse)
async def submit(request: Request, ctx: Context) -> Response:
    """Take the form; on a refused novel show the form again with what was typed."""
    if cross_site(request):
        raise HTTPException(status_code=403, detail=CROSS_SITE_MESSAGE)
    address = client_address(request)
    await limit_submissions(ctx, request, f"addr:{address}")
    upload = None
    try:
        upload = await read_submission(request, ctx.settings.max_upload_bytes)
        if not form_tokens(request).valid(request, upload.form_token):
            return form_page(
                request,
                ctx,
                error=FORM_EXPIRED_MESSAGE,
                status_code=403,
                values=_kept(upload.fields),
            )
        submitted = await submit_comic(
            ctx,
            Submission(
                title=upload.title,
                data=upload.data,
                filename=upload.filename,
                content_type=upload.content_type,
                options=upload.style.to_options(),
                client_addr=address,
                idempotency_key=upload.form_token,
            ),
        )
    except ServiceError as exc:
        kept = _kept(dict(upload.fields if upload is not None else exc.fields))
        message = FORM_REUSED_MESSAGE if isinstance(exc, KeyReused) else exc.message
        return form_page(request, ctx, error=message, status_code=exc.status_code, values=kept)
    return RedirectResponse(f"/comics/{submitted.comic.id}", status_code=303)


@router.get("/comics/{comic_id:uuid}", response_class=HTMLResponse)
async def status(comic_id: uuid.UUID, request: Request, ctx: Context) -> HTMLResponse:
    # Refreshed every few seconds while the comic is made: the hot standby may answer (a
    # comic it has not replayed yet, just submitted, is looked for on the primary).
    view = await comics.get_comic(ctx, str(comic_id), standby=True)
    comic = view.comic
    in_progress = comic.status in (ComicStatus.QUEUED.value, ComicStatus.RUNNING.value)
    return render(
        request,
        "storefront/status.html",
        {
            "comic": comic,
            "refresh": REFRESH_SECONDS if in_progress else None,
            "percent": round((comic.progress or 0) * 100),
            "done": comic.status == ComicStatus.COMPLETED.value,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/comics/{comic_id:uuid}/read/{number:int}", response_class=HTMLResponse)
async def read(comic_id: uuid.UUID, number: int, request: Request, ctx: Context) -> HTMLResponse:
    view = await comics.get_comic(ctx, str(comic_id))
    if view.comic.status != ComicStatus.COMPLETED.value:
        return RedirectResponse(f"/comics/{comic_id}", status_code=303)  # type: ignore[return-value]
    numbers = sorted(page.number for page in view.pages)
    if number not in numbers:
        raise NotFound(f"This comic has no page {number}.")
    position = numbers.index(number)
    page = next(p for p in view.pages if p.number == number)
    return render(
        request,
        "storefront/read.html",
        {
            "comic": view.comic,
            "page": page,
            "number": number,
            "total": len(numbers),
            "previous": numbers[position - 1] if position > 0 else None,
            "next": numbers[position + 1] if position + 1 < len(numbers) else None,
        },
    )


@router.get("/comics/{comic_id:uuid}/pages/{number:int}.png", response_class=Response)
async def page_image(comic_id: uuid.UUID, number: int, request: Request, ctx: Context) -> Response:
    data = await comics.page_image(ctx, str(comic_id), number)
    return binary_response(request, data, "image/png")


@router.get("/comics/{comic_id:uuid}/comic.{kind:str}", response_class=Response)
async def download(comic_id: uuid.UUID, kind: str, request: Request, ctx: Context) -> Response:
    media_types = {"pdf": "application/pdf", "cbz": "application/vnd.comicbook+zip"}
    if kind not in media_types:
        raise NotFound("Comics can be downloaded as PDF or CBZ.")
    data = await comics.archive(ctx, str(comic_id), kind)
    disposition = f'attachment; filename="comic-{comic_id}.{kind}"'
    return binary_response(request, data, media_types[kind], **{"Content-Disposition": disposition})
