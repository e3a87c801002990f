"""Attachments' HTTP handlers: a teacher's upload for a group, or a school admin's for the school (for an
announcement), judged at the door before anything is stored; a download link for the members of the
groups of the posts that name it.

Every answer, errors included, carries ``X-Content-Type-Options: nosniff`` and private caching only."""

import asyncio
import contextlib
import functools
import logging
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from media.attachments import store
from media.attachments.domain import (
    AttachmentLink,
    UploadedAttachment,
    UploadQuery,
    download_disposition,
    new_attachment_id,
    safe_filename,
)
from media.attachments.pdf import PDF, SNIFF_BYTES, NotAcceptedPdf, PdfReport, judge_pdf, looks_like_pdf
from media.resources import CHECKS, STORAGE
from media.settings import Settings
from media.storage import StorageUnavailable
from media.store import school_of_group
from media.upload import receive_upload
from shared import membership_copy
from shared.app import POOL, settings_of
from shared.contracts import AttachmentUploaded
from shared.errors import (
    AppError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.http import json_response, path_id, read_query
from shared.middleware import error_response
from shared.outbox import publish
from shared.staff_copy import is_admin
from shared.tokens import CALLER, Caller, require_caller

log = logging.getLogger(__name__)

# What the upload route documents; the bytes decide, whatever the header says.
ACCEPTED_TYPES = (PDF, "application/octet-stream")
_NO_STORE = "private, no-store"
# A link lives 5 minutes: a client may reuse the answer for one of them, never a shared cache.
_LINK_CACHING = "private, max-age=60"
_STORAGE_RETRY_SECONDS = 30

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _guarded(handler: Handler) -> Handler:
    """nosniff on every answer; errors (and whatever did not set its own) never cached."""

    @functools.wraps(handler)
    async def with_headers(request: web.Request) -> web.Response:
        try:
            response = await handler(request)
        except AppError as exc:
            response = error_response(exc)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", _NO_STORE)
        return response

    return with_headers


@_guarded
async def upload_attachment(request: web.Request) -> web.Response:
    """A teacher's attachment for a group they teach (404 for a group they are not in, 403 for a guardian),
    accepted as _accept says."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    query = read_query(request, UploadQuery)
    async with request.app[POOL].acquire() as conn:
        role = await membership_copy.role_in(conn, group_id, caller.person_id)
        school_id = await school_of_group(conn, group_id)
    if role is None or school_id is None:
        raise NotFound("no such group")
    if role != "teacher":
        raise Forbidden("only the group's teachers can upload attachments")
    return await _accept(request, caller, school_id, group_id, query)


@_guarded
async def upload_school_attachment(request: web.Request) -> web.Response:
    """A school admin's attachment for the school (the newsletter of an announcement to many groups), named
    in one announcement and served to every group it goes to; 404 for anyone but the school's admins
    (media's staff copy, as identity answers for a school one does not administer). Accepted as _accept
    says, with the same limits."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, UploadQuery)
    async with request.app[POOL].acquire() as conn:
        if not await is_admin(conn, school_id, caller.person_id):
            raise NotFound("no such school")
    return await _accept(request, caller, school_id, None, query)


async def _accept(
    request: web.Request, caller: Caller, school_id: uuid.UUID, group_id: uuid.UUID | None, query: UploadQuery
) -> web.Response:
    """The upload, for the group (or the school, ``group_id`` None): within the upload limits (429), the
    size limit (413), a PDF by its first bytes (415), then a PDF we pass on: intact, not encrypted, within
    the page and object limits, without scripts, actions or files inside (422). Streamed to a temporary
    file, so memory stays bounded whatever the size; nothing is stored before the verdict."""
    settings = settings_of(request.app, Settings)
    async with request.app[POOL].acquire() as conn:
        # Refused before a byte of the body is read; checked again, under a lock, when the file is kept.
        await store.check_limits(conn, settings, caller.person_id, school_id)
    filename = safe_filename(query.filename)
    attachment_id = new_attachment_id()
    key = f"{school_id}/attachments/{attachment_id}.pdf"
    with tempfile.TemporaryDirectory(prefix="klaspost-attachment-") as folder:
        path = os.path.join(folder, "upload")
        try:
            size = await receive_upload(
                request,
                path,
                settings.attachment_max_bytes,
                "attachment",
                SNIFF_BYTES,
                looks_like_pdf,
                _unsupported,
            )
            report = await _judge(request, path, settings)
        except (PayloadTooLarge, UnsupportedMediaType, ValidationFailed):
            # Every refusal counts towards the hourly limit (README), too large or no PDF as well.
            async with request.app[POOL].acquire() as conn:
                await store.record_refusal(conn, caller.person_id, school_id)
            raise
        try:
            await request.app[STORAGE].put_attachment(key, path, PDF, download_disposition(filename))
        except StorageUnavailable as exc:
            log.warning("storage unavailable for an attachment", extra={"error": str(exc)})
            raise ServiceUnavailable(
                "attachments cannot be stored right now; try again shortly",
                retry_after=_STORAGE_RETRY_SECONDS,
            ) from exc
    event = AttachmentUploaded(
        attachment_id=attachment_id,
        group_id=group_id,
        uploader_id=caller.person_id,
        filename=filename,
        content_type=PDF,
        size_bytes=size,
    )
    try:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            await store.lock_school(conn, school_id)
            await store.check_limits(conn, settings, caller.person_id, school_id)
            await store.insert(
                conn, attachment_id, school_id, group_id, caller.person_id, filename, PDF, size, key
            )
            await publish(conn, event, school_id)
    except Exception:
        # Refused at the last check (or failed): the stored bytes must not outlive the refusal.
        with contextlib.suppress(StorageUnavailable):
            await request.app[STORAGE].delete_attachment(key)
        raise
    log.info("attachment accepted", extra={"attachment_id": str(attachment_id), "pages": report.pages})
    uploaded = UploadedAttachment(
        attachment_id=attachment_id,
        status="uploaded",
        filename=filename,
        content_type=PDF,
        size_bytes=size,
        pages=report.pages,
    )
    return json_response(uploaded, status=201)


def _unsupported() -> UnsupportedMediaType:
    return UnsupportedMediaType("only PDF files can be attached (photos go through the photo upload)")


async def _judge(request: web.Request, path: str, settings: Settings) -> PdfReport:
    """The structural check in a thread, a few at a time (the photo checks' bound), the others wait."""
    async with request.app[CHECKS]:
        try:
            return await asyncio.to_thread(
                judge_pdf,
                path,
                settings.attachment_max_pages,
                settings.attachment_max_objects,
                settings.attachment_check_seconds,
            )
        except NotAcceptedPdf as exc:
            raise ValidationFailed(
                f"the attachment cannot be used: {exc.reason}", [{"field": "(body)", "problem": exc.reason}]
            ) from exc


@_guarded
async def get_attachment(request: web.Request) -> web.Response:
    """A download link for the uploader (until a post that names it appears) and the members of its post's
    group (a school's attachment: of any group its announcement went to); 404 for everyone else, anonymous
    callers included (an id cannot be probed)."""
    attachment_id = path_id(request, "attachment_id")
    caller: Caller | None = request.get(CALLER)
    if caller is None:
        raise NotFound("no such attachment")
    async with request.app[POOL].acquire() as conn:
        found = await store.visible(conn, attachment_id, caller.person_id)
    if found is None:
        raise NotFound("no such attachment")
    ttl = settings_of(request.app, Settings).attachment_url_ttl_seconds
    url = request.app[STORAGE].presigned_attachment_url(
        found["key"], ttl, found["content_type"], download_disposition(found["filename"])
    )
    link = AttachmentLink(
        attachment_id=attachment_id,
        filename=found["filename"],
        content_type=found["content_type"],
        size_bytes=found["size_bytes"],
        url=url,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
    )
    return json_response(link, headers={"Cache-Control": _LINK_CACHING})
