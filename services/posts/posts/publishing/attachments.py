"""A post's attachments (the newsletter PDF): media judges and stores them and tells posts of each one it
accepted (AttachmentUploaded); posts keeps that copy and decides which posts may name it.

A teacher's post names only its writer's own attachments uploaded for the post's group, none used by
another post. A school admin's announcement (one post per group) names attachments uploaded for the
school: the writer's own, in no other announcement; the one stored file then belongs to every post of
the announcement. Anything else is a 422 naming ``attachment_ids[i]``. The rows are locked while a post
takes them, so two posts at once cannot both take one.

Whenever the posts that name an attachment change (a post written, edited, deleted, or appearing at its
send-later time) media is told the whole set (AttachmentPostsChanged, with a growing revision): it
serves the file to the groups of the published ones, keeps it while only send-later posts name it (not
an unused upload for the one-day clean-up), and deletes it once none does. Posts then forgets it, so no
post names a deleted file."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
from pydantic import BaseModel, Field

from shared.contracts import AttachmentPost, AttachmentPostsChanged, AttachmentUploaded
from shared.errors import ValidationFailed
from shared.ids import minted_at
from shared.outbox import publish

MAX_ATTACHMENTS_PER_POST = 10
# How long a post waits for the copy of an attachment media gave a moment ago (one event behind).
WAIT_FOR_COPY_SECONDS = 3.0

# A post's attachments as JSON (AttachmentRef, in the post's order), for the SQL that builds post views;
# `p` is the post.
ATTACHMENTS_JSON = """COALESCE((SELECT json_agg(json_build_object(
        'attachment_id', a.attachment_id, 'filename', a.filename, 'content_type', a.content_type,
        'size_bytes', a.size_bytes) ORDER BY pa.position)
    FROM post_attachments pa JOIN attachments a USING (attachment_id) WHERE pa.post_id = p.post_id), '[]'::json)"""
_NOT_YOURS = "not an attachment you uploaded (upload it first: POST /groups/{group_id}/attachments on media)"
_NOT_THE_SCHOOLS = (
    "not an attachment you uploaded for the school (upload it first: POST /schools/{school_id}/attachments "
    "on media)"
)


class AttachmentRef(BaseModel):
    """A file of a post; media hands its members a short-lived download link (GET /attachments/{id})."""

    attachment_id: uuid.UUID
    filename: str = Field(description="As the uploader named it, made safe by media.")
    content_type: str = Field(description="As media judged it by the bytes: application/pdf.")
    size_bytes: int = Field(ge=0)


async def keep_copy(conn: asyncpg.Connection, event: AttachmentUploaded, school_id: uuid.UUID | None) -> None:
    """Keep media's accepted attachment (the first delivery wins; an attachment never changes). A school's
    (no group) keeps the envelope's school: only that school's announcements may name it."""
    await conn.execute(
        """INSERT INTO attachments (attachment_id, group_id, school_id, uploader_id, filename, content_type,
                                    size_bytes)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (attachment_id) DO NOTHING""",
        event.attachment_id,
        event.group_id,
        school_id,
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
    given = minted_at(attachment_id)
    return given is not None and 0 <= (datetime.now(UTC) - given).total_seconds() <= seconds


async def forget_unused(conn: asyncpg.Connection, attachment_id: uuid.UUID) -> None:
    """Media deleted an upload no post used within a day (AttachmentRemoved): no post may name it from now
    on. (A post that names it, even one waiting for its send-later time, keeps it from the clean-up; one
    taken in a post at the very moment it was deleted leaves that post rather than listing a file that is
    gone.)"""
    await conn.execute("DELETE FROM attachments WHERE attachment_id = $1", attachment_id)


async def take(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    writer_id: uuid.UUID,
    attachment_ids: list[uuid.UUID],
    *,
    school_id: uuid.UUID,
    announcement_id: uuid.UUID | None = None,
    tell: bool = True,
) -> list[AttachmentRef]:
    """Make ``attachment_ids`` the post's attachments, in this order, in the caller's transaction (the post's
    row written or locked already). Those it had and keeps stay, whoever added them; a new one must be the
    writer's own upload for the group and unused, or, in a post of an announcement (``announcement_id``),
    the writer's own upload for the school in no other announcement, or one the announcement has already.
    Attachments left out leave the post (media deletes those no post names any more). ValidationFailed
    (422) names every ``attachment_ids[i]`` that cannot be taken. ``tell``: tell media now (an
    announcement tells once, after its last post)."""
    before = await ids_of_post(conn, post_id)
    if attachment_ids or before:
        # Those it had are locked too, in the same order, since tell_media locks them all: two edits of
        # an announcement's posts at once then wait for each other rather than deadlock.
        wanted = sorted({*before, *attachment_ids})
        await conn.execute(
            """SELECT 1 FROM attachments WHERE attachment_id = ANY($1::uuid[])
               ORDER BY attachment_id FOR UPDATE""",
            wanted,
        )
        # Read in a statement of its own: under READ COMMITTED it sees what a post that held the lock
        # before us committed (the locking statement's subqueries would still see the older snapshot,
        # and two posts could take one attachment).
        rows = await conn.fetch(
            """SELECT a.attachment_id, a.group_id, a.school_id, a.uploader_id, a.announcement_id,
                      EXISTS (SELECT 1 FROM post_attachments pa
                              WHERE pa.attachment_id = a.attachment_id AND pa.post_id = $2) AS in_this,
                      EXISTS (SELECT 1 FROM post_attachments pa
                              WHERE pa.attachment_id = a.attachment_id AND pa.post_id <> $2) AS elsewhere
               FROM attachments a WHERE a.attachment_id = ANY($1::uuid[])""",
            wanted,
            post_id,
        )
        found = {r["attachment_id"]: r for r in rows}
        post = _Post(group_id, school_id, writer_id, announcement_id)
        problems = []
        for i, attachment_id in enumerate(attachment_ids):
            problem = _problem(found.get(attachment_id), post)
            if problem:
                problems.append({"field": f"attachment_ids[{i}]", "problem": problem})
        if problems:
            raise ValidationFailed("some attachments cannot be used in this post", problems)
    await conn.execute(
        "DELETE FROM post_attachments WHERE post_id = $1 AND attachment_id <> ALL($2::uuid[])",
        post_id,
        attachment_ids,
    )
    await conn.executemany(
        """INSERT INTO post_attachments (post_id, attachment_id, position) VALUES ($1, $2, $3)
           ON CONFLICT (post_id, attachment_id) DO UPDATE SET position = EXCLUDED.position""",
        [(post_id, attachment_id, i) for i, attachment_id in enumerate(attachment_ids)],
    )
    if announcement_id is not None and attachment_ids:
        # A school's attachment belongs to the first announcement that takes it.
        await conn.execute(
            """UPDATE attachments SET announcement_id = $2
               WHERE attachment_id = ANY($1::uuid[]) AND group_id IS NULL AND announcement_id IS NULL""",
            attachment_ids,
            announcement_id,
        )
    if tell:
        await tell_media(conn, [*before, *attachment_ids], school_id)
    return await of_post(conn, post_id)


class _Post(NamedTuple):
    group_id: uuid.UUID
    school_id: uuid.UUID
    writer_id: uuid.UUID
    announcement_id: uuid.UUID | None


def _problem(row: Any, post: _Post) -> str | None:
    """Why the post cannot take the attachment (``row`` as take reads it, None when unknown), or None.
    Someone else's upload is not told apart from none: ids cannot be probed."""
    if row is not None and row["in_this"]:
        return None
    if row is None or (row["group_id"] is None and row["school_id"] != post.school_id):
        return _NOT_YOURS if post.announcement_id is None else _NOT_THE_SCHOOLS
    if row["group_id"] is None:
        if post.announcement_id is None:
            return "uploaded for the school: it goes in an announcement, a group's post takes the group's uploads"
        if row["announcement_id"] == post.announcement_id:
            return None  # one file for every post of the announcement, whoever edits it
        if row["uploader_id"] != post.writer_id:
            return _NOT_THE_SCHOOLS
        if row["announcement_id"] is not None or row["elsewhere"]:
            return "already in another announcement"
        return None
    if row["uploader_id"] != post.writer_id:
        return _NOT_YOURS if post.announcement_id is None else _NOT_THE_SCHOOLS
    if post.announcement_id is not None:
        return (
            "uploaded for one group: an announcement takes attachments uploaded for the school "
            "(POST /schools/{school_id}/attachments on media)"
        )
    if row["group_id"] != post.group_id:
        return "uploaded for another group"
    if row["elsewhere"]:
        return "already in another post"
    return None


async def post_deleted(conn: asyncpg.Connection, post_id: uuid.UUID, school_id: uuid.UUID) -> None:
    """A deleted post names its attachments no more: media deletes those no other post names (the other
    posts of an announcement keep theirs)."""
    attachment_ids = await ids_of_post(conn, post_id)
    if attachment_ids:
        await conn.execute("DELETE FROM post_attachments WHERE post_id = $1", post_id)
        await tell_media(conn, attachment_ids, school_id)


async def tell_media(conn: asyncpg.Connection, attachment_ids: list[uuid.UUID], school_id: uuid.UUID) -> None:
    """In the caller's transaction (the posts' changes made): for each attachment, the posts (not deleted)
    that name it from now on, with a revision one higher (the row's lock orders concurrent changes, so
    the newest revision is the last committed set). One no post names any more is forgotten: media
    deletes it, and no post may name it again."""
    for attachment_id in sorted(set(attachment_ids)):
        revision = await conn.fetchval(
            "UPDATE attachments SET revision = revision + 1 WHERE attachment_id = $1 RETURNING revision",
            attachment_id,
        )
        if revision is None:
            continue  # forgotten meanwhile (media's clean-up)
        rows = await conn.fetch(
            """SELECT pa.post_id, p.group_id, p.published_at IS NOT NULL AS published
               FROM post_attachments pa JOIN posts p USING (post_id)
               WHERE pa.attachment_id = $1 AND p.deleted_at IS NULL ORDER BY p.group_id, pa.post_id""",
            attachment_id,
        )
        posts = [
            AttachmentPost(post_id=r["post_id"], group_id=r["group_id"], published=r["published"])
            for r in rows
        ]
        event = AttachmentPostsChanged(attachment_id=attachment_id, posts=posts, revision=revision)
        await publish(conn, event, school_id)
        if not posts:
            await conn.execute("DELETE FROM attachments WHERE attachment_id = $1", attachment_id)


async def of_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> list[AttachmentRef]:
    rows = await conn.fetch(
        """SELECT a.attachment_id, a.filename, a.content_type, a.size_bytes
           FROM post_attachments pa JOIN attachments a USING (attachment_id)
           WHERE pa.post_id = $1 ORDER BY pa.position""",
        post_id,
    )
    return [AttachmentRef.model_validate(dict(r)) for r in rows]


async def ids_of_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> list[uuid.UUID]:
    return [a.attachment_id for a in await of_post(conn, post_id)]
