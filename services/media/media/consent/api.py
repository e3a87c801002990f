"""Tagging the children who appear in a photo (issue 9, seed rule 6): by its uploader or a teacher of
its group. A photo showing a child without photo consent cannot be posted; posts learns a photo's tags
and consent from PhotoChanged and refuses it before anything is published."""

import uuid

import asyncpg
from aiohttp import web

from media import changes
from media.api import caller_or_not_found, photo_response
from media.consent import store
from media.consent.domain import WITHOUT_CONSENT, PhotoChildren, TagChildren, TaggedChild
from shared import membership_copy
from shared.app import POOL
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.tokens import Caller, require_caller


async def _taggable(
    conn: asyncpg.Connection, caller: Caller, photo_id: uuid.UUID, *, lock: bool = True
) -> asyncpg.Record:
    """The photo (locked, for a change) if the caller uploaded it and it is in no post yet, or teaches its
    group now; 404 when they may not see it, 403 for a member of its group who is no teacher."""
    photo = await store.photo_for_tagging(conn, photo_id, lock=lock)
    if photo is None or photo["group_id"] is None:
        raise NotFound("no such photo")
    if photo["uploader_id"] == caller.person_id and photo["post_id"] is None:
        return photo
    role = await membership_copy.role_in(conn, photo["group_id"], caller.person_id)
    if role == "teacher":
        return photo
    if role is not None and photo["post_id"] is not None:
        raise Forbidden("only the group's teachers can say who is in a photo")
    raise NotFound("no such photo")


async def _view(conn: asyncpg.Connection, photo_id: uuid.UUID) -> PhotoChildren:
    tagged = [
        TaggedChild(child_id=r["child_id"], photo_consent=r["photo_consent"])
        for r in await store.tags(conn, photo_id)
    ]
    postable = all(t.photo_consent for t in tagged)
    return PhotoChildren(
        photo_id=photo_id, children=tagged, postable=postable, problem=None if postable else WITHOUT_CONSENT
    )


@photo_response
async def tag_children(request: web.Request) -> web.Response:
    """Set the children who appear in the photo (all of them; [] for none). 422 naming each child_ids[i]
    that is no child of the photo's school."""
    caller = require_caller(request)
    photo_id = path_id(request, "photo_id")
    command = await read_json(request, TagChildren)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        photo = await _taggable(conn, caller, photo_id)
        known = await store.known_children(conn, photo["school_id"], command.child_ids)
        unknown = [
            {"field": f"child_ids[{i}]", "problem": "no child of this school"}
            for i, child_id in enumerate(command.child_ids)
            if child_id not in known
        ]
        if unknown:
            raise ValidationFailed("some children are not children of this school", unknown)
        if await store.set_tags(conn, photo_id, command.child_ids, caller.person_id):
            await changes.announce(conn, [photo_id])
        view = await _view(conn, photo_id)
    return json_response(view)


@photo_response
async def photo_children(request: web.Request) -> web.Response:
    """The children tagged in the photo with their consent now, and whether a post may carry it; 404 for
    anyone who may not see it, anonymous callers too."""
    photo_id = path_id(request, "photo_id")
    caller = caller_or_not_found(request, "no such photo")
    async with request.app[POOL].acquire() as conn:
        await _taggable(conn, caller, photo_id, lock=False)
        view = await _view(conn, photo_id)
    return json_response(view)
