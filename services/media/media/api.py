"""Media's HTTP handlers: upload by teachers, judged at the door; authorised viewing of processed variants."""

import contextlib
import functools
import logging
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web

from media import changes, quota, store
from media.domain import SHARING_NOTICE, PhotoUploaded, PhotoView, VariantLink
from media.imaging import SNIFF_BYTES, ImageRejected, Inspection, WorkerCrashed, sniff_image_type
from media.processing import NOTIFY_CHANNEL as PROCESSING_CHANNEL
from media.resources import CHECKS, PROCESSOR, STORAGE
from media.settings import Settings
from media.storage import StorageUnavailable, original_key
from media.upload import receive_upload
from shared import membership_copy
from shared.app import POOL, settings_of
from shared.errors import (
    AppError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.http import json_response, path_id
from shared.ids import time_ordered_id
from shared.logs import correlation_id
from shared.middleware import error_response
from shared.tokens import CALLER, Caller, require_caller

log = logging.getLogger(__name__)

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/heic", "image/heif")
# Photo responses are never cached by shared caches, and never sniffed into another type by browsers. Only
# a ready photo's links may be kept, by the browser alone and for less than the links live (see get_photo).
_PHOTO_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
# A cached answer must leave its links at least this long to be followed.
_LINK_MARGIN_SECONDS = 60
_STORAGE_RETRY_SECONDS = 30
# Tries of the check when its worker crashes (see _judge).
_CHECK_TRIES = 2

Handler = Callable[[web.Request], Awaitable[web.Response]]


def caller_or_not_found(request: web.Request, message: str) -> Caller:
    """The caller of a route that reads what only some may see (`auth="optional"`): without a token, 404
    like anyone else who may not see it (a bad token is 401 from the shared middleware)."""
    caller: Caller | None = request.get(CALLER)
    if caller is None:
        raise NotFound(message)
    return caller


def photo_response(handler: Handler) -> Handler:
    """Give every response of a photo endpoint, errors included, the photo headers."""

    @functools.wraps(handler)
    async def with_headers(request: web.Request) -> web.Response:
        try:
            response = await handler(request)
        except AppError as exc:
            response = error_response(exc)
        for name, value in _PHOTO_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return with_headers


@photo_response
async def upload_photo(request: web.Request) -> web.Response:
    """A teacher's photo for a group they teach (404 for a group they do not belong to, 403 for a guardian),
    judged before anything is stored: within the upload limits (429), the size limit (413), an accepted
    type by its bytes (415), then intact, within the pixel limit, not moving, not hiding another file (422).
    Streamed to a temporary file, so memory stays bounded whatever the size. An accepted photo is processed
    at once (status "processing", then "ready"), and posts learns of it (PhotoChanged): a post may then
    carry it."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    settings = settings_of(request.app, Settings)
    async with request.app[POOL].acquire() as conn:
        role = await membership_copy.role_in(conn, group_id, caller.person_id)
        school_id = await store.school_of_group(conn, group_id)
        if role is None or school_id is None:
            raise NotFound("no such group")
        if role != "teacher":
            raise Forbidden("only the group's teachers can upload photos")
        # Refused before a byte of the body is read; checked again, under a lock, when the photo is kept.
        await quota.check(conn, settings, caller.person_id, school_id)
    with tempfile.TemporaryDirectory(prefix="klaspost-upload-") as folder:
        path = os.path.join(folder, "upload")
        try:
            await receive_upload(
                request, path, settings.photo_max_bytes, "photo", SNIFF_BYTES, _is_image, _unsupported
            )
            photo = await _judge(request, path, settings.photo_max_pixels)
        except (PayloadTooLarge, UnsupportedMediaType, ValidationFailed):
            # Every refusal counts towards the hourly limit, not only a failed check (README): a client
            # sending junk, empty or oversized bodies in a loop is limited like one sending bad photos.
            async with request.app[POOL].acquire() as conn:
                await quota.record_refusal(conn, caller.person_id, school_id)
            raise
        # Time-ordered: posts tells a photo uploaded a moment ago (its copy may lag) from an unknown one.
        photo_id = time_ordered_id()
        key = original_key(school_id, photo_id)
        try:
            await request.app[STORAGE].put_original(key, path, photo.content_type)
        except StorageUnavailable as exc:
            log.warning("storage unavailable for an upload", extra={"error": str(exc)})
            raise ServiceUnavailable(
                "photos cannot be stored right now; try again shortly", retry_after=_STORAGE_RETRY_SECONDS
            ) from exc
    try:
        await _keep(request.app[POOL], settings, caller.person_id, photo_id, school_id, group_id, photo, key)
    except Exception:
        # Refused at the last check (or failed): the stored bytes must not outlive the refusal. Should
        # storage fail now, the object stays without a row: a leftover with no metadata path to a person.
        with contextlib.suppress(StorageUnavailable):
            await request.app[STORAGE].delete_original(key)
        raise
    return json_response(
        PhotoUploaded(
            photo_id=photo_id,
            status="processing",
            size_bytes=photo.size_bytes,
            content_type=photo.content_type,
        ),
        status=201,
    )


def _is_image(head: bytes) -> bool:
    return sniff_image_type(head) is not None


def _unsupported() -> UnsupportedMediaType:
    return UnsupportedMediaType("only JPEG, PNG, WebP or HEIC photos can be uploaded")


async def _judge(request: web.Request, path: str, max_pixels: int) -> Inspection:
    """The full check, in a worker process; a few at a time (`upload_checks_at_once`), the others wait."""
    async with request.app[CHECKS]:
        for attempt in range(1, _CHECK_TRIES + 1):
            try:
                return await request.app[PROCESSOR].inspect(path, max_pixels)
            except ImageRejected as exc:
                raise ValidationFailed(
                    f"the photo cannot be used: {exc.reason}", [{"field": "(body)", "problem": exc.reason}]
                ) from exc
            except WorkerCrashed as exc:
                # A dying worker fails every photo it held, not only the one it died on: judged again, a
                # sound photo passes and one that crashes the decoder crashes it once more.
                if attempt == _CHECK_TRIES:
                    raise ValidationFailed(
                        "the photo could not be read",
                        [{"field": "(body)", "problem": "the image could not be decoded"}],
                    ) from exc
                log.warning("a photo worker crashed during an upload check; checking again")
        raise AssertionError("unreachable")


async def _keep(
    pool: asyncpg.Pool,
    settings: Settings,
    person_id: uuid.UUID,
    photo_id: uuid.UUID,
    school_id: uuid.UUID,
    group_id: uuid.UUID,
    photo: Inspection,
    key: str,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await quota.lock_school(conn, school_id)
        await quota.check(conn, settings, person_id, school_id)
        await store.insert_photo(
            conn,
            photo_id,
            school_id,
            group_id,
            person_id,
            photo.content_type,
            photo.size_bytes,
            key,
            correlation_id.get(),
        )
        # Processed now, not when a post uses it; posts' copy learns the photo may be posted.
        await changes.announce(conn, [photo_id])
        await conn.execute("SELECT pg_notify($1, '')", PROCESSING_CHANNEL)


@photo_response
async def get_photo(request: web.Request) -> web.Response:
    """Short-lived links to the processed variants: for its uploader until it is posted, then for the members
    of its group now (store.visible_photo); 404 for everyone else, anonymous callers too (issue 9: a photo id
    tells nobody outside anything, not even that a token would help)."""
    photo_id = path_id(request, "photo_id")
    caller = caller_or_not_found(request, "no such photo")
    async with request.app[POOL].acquire() as conn:
        photo = await store.visible_photo(conn, photo_id, caller.person_id)
        if photo is None:
            raise NotFound("no such photo")
        rows = await store.variants(conn, photo_id) if photo["status"] == "ready" else []
        school = await store.school(conn, photo["school_id"])
    ttl = settings_of(request.app, Settings).photo_url_ttl_seconds
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    storage = request.app[STORAGE]
    links = [
        VariantLink(
            size=r["size"],
            width=r["width"],
            height=r["height"],
            url=storage.presigned_variant_url(r["key"], ttl),
            expires_at=expires_at,
        )
        for r in rows
    ]
    view = PhotoView(
        photo_id=photo_id,
        status=photo["status"],
        reason=photo["reject_reason"],
        variants=links,
        notice=_notice(request, school),
    )
    response = json_response(view)
    if links:
        # Asked again within this time, the browser's copy still holds links that work; a photo not ready
        # yet is not cached at all, so its next answer shows the change.
        response.headers["Cache-Control"] = f"private, max-age={max(0, ttl - _LINK_MARGIN_SECONDS)}"
    return response


def _notice(request: web.Request, school: asyncpg.Record | None) -> str:
    """The school's own words that its photos may not be passed on (seed rule 6; a school setting in
    identity), or ours in the reader's language until media has the school's copy."""
    if school is not None and school["share_notice"]:
        return str(school["share_notice"])
    locale = "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "nl"
    return SHARING_NOTICE[locale]
