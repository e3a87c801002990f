"""Media's HTTP handlers: upload by teachers, authorised viewing of processed variants."""

import tempfile
import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web

from media import store
from media.domain import SHARING_NOTICE, PhotoUploaded, PhotoView, VariantLink
from media.imaging import sniff_image_type
from media.resources import STORAGE
from media.settings import Settings
from media.storage import original_key
from shared import membership_copy
from shared.app import POOL, settings_of
from shared.errors import Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.http import json_response, path_id
from shared.tokens import require_caller

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp")
_CHUNK = 256 * 1024
_SNIFF = 32


async def upload_photo(request: web.Request) -> web.Response:
    """Stream the body to a temporary file (bounded memory), check it is an image, store the original
    for a group the caller teaches (404 for a group they do not belong to, 403 for a guardian)."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    async with request.app[POOL].acquire() as conn:
        role = await membership_copy.role_in(conn, group_id, caller.person_id)
        school_id = await store.school_of_group(conn, group_id)
    if role is None or school_id is None:
        raise NotFound("no such group")
    if role != "teacher":
        raise Forbidden("only the group's teachers can upload photos")
    limit = settings_of(request.app, Settings).photo_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"a photo may be at most {limit // (1024 * 1024)} MB")
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as spool:
        size, head = 0, b""
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"a photo may be at most {limit // (1024 * 1024)} MB")
            if len(head) < _SNIFF:
                head += chunk[: _SNIFF - len(head)]
            spool.write(chunk)
        if size == 0:
            raise ValidationFailed("the photo is empty", [{"field": "(body)", "problem": "no bytes sent"}])
        # The bytes decide what this is, not the file name or the Content-Type header.
        content_type = sniff_image_type(head)
        if content_type is None:
            raise UnsupportedMediaType("only JPEG, PNG or WebP photos can be uploaded")
        photo_id = uuid.uuid4()
        key = original_key(school_id, photo_id)
        spool.seek(0)
        await request.app[STORAGE].put_original(key, spool, content_type)
    async with request.app[POOL].acquire() as conn:
        await store.insert_photo(conn, photo_id, school_id, group_id, caller.person_id, content_type, size, key)
    return json_response(
        PhotoUploaded(photo_id=photo_id, status="uploaded", size_bytes=size, content_type=content_type),
        status=201,
    )


async def get_photo(request: web.Request) -> web.Response:
    """Short-lived links to the processed variants, for the uploader and the photo's group only."""
    caller = require_caller(request)
    photo_id = path_id(request, "photo_id")
    async with request.app[POOL].acquire() as conn:
        photo = await store.visible_photo(conn, photo_id, caller.person_id)
        if photo is None:
            raise NotFound("no such photo")
        rows = await store.variants(conn, photo_id) if photo["status"] == "ready" else []
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
    locale = "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "nl"
    view = PhotoView(
        photo_id=photo_id,
        status=photo["status"],
        reason=photo["reject_reason"],
        variants=links,
        notice=SHARING_NOTICE[locale],
    )
    return json_response(view, headers={"Cache-Control": "private, no-store"})
