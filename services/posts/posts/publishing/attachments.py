"""A post's attachments (the newsletter PDF): media judges and stores them and tells posts of each one it
accepted (AttachmentUploaded); posts keeps that copy and decides which a post may name.

A post names only its writer's own attachments uploaded for the post's group, none used by another
post (422 naming ``attachment_ids[i]``). The rows are locked while a post takes them, so two posts at
once cannot both take one. An attachment an edit leaves out is forgotten here and deleted by media
(PostUpdated); a deleted post's attachments are deleted by media (PostDeleted)."""

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from shared.contracts import AttachmentUploaded
from shared.errors import ValidationFailed

MAX_ATTACHMENTS_PER_POST = 10
# How long a post waits for the copy of an attachment media gave a moment ago (one event behind).
WAIT_FOR_COPY_SECONDS = 3.0

# A post's attachments as JSON (AttachmentRef, in the post's order), for the SQL that builds post views;
# `p` is the post.
ATTACHMENTS_JSON = """COALESCE((SELECT json_agg(json_build_object(
        'attachment_id', a.attachment_id, 'filename', a.filename, 'content_type', a.content_type,
        'size_bytes', a.size_bytes) ORDER BY a.position)
    FROM attachments a WHERE a.post_id = p.post_id), '[]'::json)"""


class AttachmentRef(BaseModel):
    """A file of a post; media hands its members a short-lived download link (GET /attachments/{id})."""

    attachment_id: uuid.UUID
    filename: str = Field(description="As the uploader named it, made safe by media.")
    content_type: str = Field(description="As media judged it by the bytes: application/pdf.")
    size_bytes: int = Field(ge=0)


async def keep_copy(conn: asyncpg.Connection, event: AttachmentUploaded) -> None:
    """Keep media's accepted attachment (the first delivery wins; an attachment never changes)."""
    await conn.execute(
        """INSERT INTO attachments (attachment_id, group_id, uploader_id, filename, content_type, size_bytes)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (attachment_id) DO NOTHING""",
        event.attachment_id,
        event.group_id,
        event.uploader_id,
        event.filename,
        event.content_type,
        event.size_bytes,
    )


async def wait_for_copies(pool: asyncpg.Pool, attachment_ids: list[uuid.UUID]) -> None:
    """Before a post takes attachments: wait (up to WAIT_FOR_COPY_SECONDS, no connection held between
    looks) while one is unknown here but media gave it within that time, so a client that posts right
    after uploading is not refused for the copy being an event behind. Ids are UUIDv7 (time-ordered);
    others are not waited for."""
    deadline = time.monotonic() + WAIT_FOR_COPY_SECONDS
    while attachment_ids:
        known = await pool.fetch(
            "SELECT attachment_id FROM attachments WHERE attachment_id = ANY($1::uuid[])", attachment_ids
        )
        missing = set(attachment_ids) - {r["attachment_id"] for r in known}
        if not any(_given_within(a, WAIT_FOR_COPY_SECONDS) for a in missing) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def _given_within(attachment_id: uuid.UUID, seconds: float) -> bool:
    if attachment_id.version != 7:
        return False
    given_ms = attachment_id.int >> 80
    return 0 <= time.time() * 1000 - given_ms <= seconds * 1000


async def forget_unused(conn: asyncpg.Connection, attachment_id: uuid.UUID) -> None:
    """Media deleted an upload no post used within a day (AttachmentRemoved): no post may name it from now
    on. A send-later post that named it (media attaches only when a post appears) no longer lists it
    either, rather than listing a file that is gone."""
    await conn.execute("DELETE FROM attachments WHERE attachment_id = $1", attachment_id)


async def take(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    writer_id: uuid.UUID,
    attachment_ids: list[uuid.UUID],
) -> list[AttachmentRef]:
    """Make ``attachment_ids`` the post's attachments, in this order, in the caller's transaction (the post's
    row written or locked already). Those it had and keeps stay, whoever added them; each new one must be
    the writer's own upload for the group and unused. Attachments left out are forgotten (media deletes
    them). ValidationFailed (422) names every ``attachment_ids[i]`` that cannot be taken."""
    if not attachment_ids:
        await conn.execute("DELETE FROM attachments WHERE post_id = $1", post_id)
        return []
    rows = await conn.fetch(
        """SELECT attachment_id, group_id, uploader_id, post_id FROM attachments
           WHERE attachment_id = ANY($1::uuid[]) ORDER BY attachment_id FOR UPDATE""",
        attachment_ids,
    )
    found = {r["attachment_id"]: r for r in rows}
    problems = []
    for i, attachment_id in enumerate(attachment_ids):
        problem = _problem(found.get(attachment_id), post_id, group_id, writer_id)
        if problem:
            problems.append({"field": f"attachment_ids[{i}]", "problem": problem})
    if problems:
        raise ValidationFailed("some attachments cannot be used in this post", problems)
    await conn.execute(
        "DELETE FROM attachments WHERE post_id = $1 AND attachment_id <> ALL($2::uuid[])",
        post_id,
        attachment_ids,
    )
    await conn.executemany(
        "UPDATE attachments SET post_id = $1, position = $3 WHERE attachment_id = $2",
        [(post_id, attachment_id, i) for i, attachment_id in enumerate(attachment_ids)],
    )
    return await of_post(conn, post_id)


def _problem(row: Any, post_id: uuid.UUID, group_id: uuid.UUID, writer_id: uuid.UUID) -> str | None:
    if row is not None and row["post_id"] == post_id:
        return None
    if row is None or row["uploader_id"] != writer_id:
        # Someone else's upload is not told apart from none: ids cannot be probed.
        return (
            "not an attachment you uploaded (upload it first: POST /groups/{group_id}/attachments on media)"
        )
    if row["group_id"] != group_id:
        return "uploaded for another group"
    if row["post_id"] is not None:
        return "already in another post"
    return None


async def of_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> list[AttachmentRef]:
    rows = await conn.fetch(
        """SELECT attachment_id, filename, content_type, size_bytes FROM attachments
           WHERE post_id = $1 ORDER BY position""",
        post_id,
    )
    return [AttachmentRef.model_validate(dict(r)) for r in rows]


async def ids_of_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> list[uuid.UUID]:
    return [a.attachment_id for a in await of_post(conn, post_id)]
