"""Attachments' SQL: the uploads, the groups they are served to, the limits' counts, what is to be
deleted, and the copy of who administers a school (only admins upload for the school)."""

import math
import uuid
import zlib
from datetime import datetime, timedelta

import asyncpg

from media.settings import Settings
from shared.errors import TooManyRequests

# Attachments no post names any more (their posts deleted or edited) are deleted from storage by the
# removal drainer, woken on this channel.
REMOVED_CHANNEL = "media_attachments_removed"
_HOUR = timedelta(hours=1)


async def insert(
    conn: asyncpg.Connection,
    attachment_id: uuid.UUID,
    school_id: uuid.UUID,
    group_id: uuid.UUID | None,
    uploader_id: uuid.UUID,
    filename: str,
    content_type: str,
    size_bytes: int,
    key: str,
) -> None:
    """An accepted upload: for a group (a teacher's), or for the school (``group_id`` None, an admin's)."""
    await conn.execute(
        """INSERT INTO attachments (attachment_id, school_id, group_id, uploader_id, filename, content_type,
                                    size_bytes, key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        attachment_id,
        school_id,
        group_id,
        uploader_id,
        filename,
        content_type,
        size_bytes,
        key,
    )


async def visible(
    conn: asyncpg.Connection, attachment_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """The attachment if the person uploaded it and no published post names it yet (uploaded, or waiting
    for a send-later post), or a published post names it and the person belongs now to that post's group
    (for a school's attachment: to any group its announcement went to); otherwise nothing (a colleague
    does not see an unposted upload)."""
    return await conn.fetchrow(
        """SELECT a.attachment_id, a.filename, a.content_type, a.size_bytes, a.key FROM attachments a
           WHERE a.attachment_id = $1 AND (
               (a.status IN ('uploaded', 'reserved') AND a.uploader_id = $2)
               OR (a.status = 'attached' AND EXISTS (
                   SELECT 1 FROM attachment_groups ag
                   JOIN memberships m ON m.group_id = ag.group_id AND m.person_id = $2 AND m.active
                   WHERE ag.attachment_id = a.attachment_id)))""",
        attachment_id,
        person_id,
    )


async def follow_posts(
    conn: asyncpg.Connection,
    attachment_id: uuid.UUID,
    revision: int,
    published_groups: list[uuid.UUID],
    waiting: bool,
) -> tuple[str, list[uuid.UUID]] | None:
    """The posts naming the attachment changed (posts' ``revision`` of that set; an older one than the
    copy's changes nothing): served to the members of ``published_groups`` (those of its school's groups
    it may go to: its own group, or for a school's attachment any group of the school), kept while only
    send-later posts name it (``waiting``), removed when none does (the removal drainer deletes it).
    Returns the new status and the groups refused, or None when nothing changed (unknown, removed
    already, or an older revision)."""
    row = await conn.fetchrow(
        """SELECT a.status, a.posts_revision, a.group_id, a.school_id FROM attachments a
           WHERE a.attachment_id = $1 FOR UPDATE""",
        attachment_id,
    )
    if row is None or row["status"] == "removed" or row["posts_revision"] >= revision:
        return None
    allowed: list[uuid.UUID] = [
        r["group_id"]
        for r in await conn.fetch(
            """SELECT g.group_id FROM unnest($1::uuid[]) AS g(group_id)
               WHERE g.group_id = $2 OR ($2::uuid IS NULL AND EXISTS (
                   SELECT 1 FROM groups gr WHERE gr.group_id = g.group_id AND gr.school_id = $3))""",
            published_groups,
            row["group_id"],
            row["school_id"],
        )
    ]
    refused = [g for g in published_groups if g not in allowed]
    # Removed only when no post names it; one named only for groups it may not go to is kept unserved.
    status = "attached" if allowed else "reserved" if waiting or published_groups else "removed"
    await conn.execute(
        "UPDATE attachments SET status = $2, posts_revision = $3 WHERE attachment_id = $1",
        attachment_id,
        status,
        revision,
    )
    await conn.execute("DELETE FROM attachment_groups WHERE attachment_id = $1", attachment_id)
    await conn.executemany(
        "INSERT INTO attachment_groups (attachment_id, group_id) VALUES ($1, $2)",
        [(attachment_id, g) for g in allowed],
    )
    if status == "removed":
        await conn.execute("SELECT pg_notify($1, '')", REMOVED_CHANNEL)
    return status, refused


async def take_removed(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Delete the rows of removed attachments in the caller's transaction, returning their keys, to be
    deleted from storage before the transaction commits. Locked rows are left for the next round."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """DELETE FROM attachments WHERE attachment_id IN (
               SELECT attachment_id FROM attachments WHERE status = 'removed'
               ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING attachment_id, key""",
        limit,
    )
    return rows


async def take_unused(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int
) -> list[asyncpg.Record]:
    """As take_removed, for uploads no post used within ``older_than_seconds``."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """DELETE FROM attachments WHERE attachment_id IN (
               SELECT attachment_id FROM attachments
               WHERE status = 'uploaded' AND created_at < now() - $1 * interval '1 second'
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING attachment_id, school_id, key""",
        older_than_seconds,
        limit,
    )
    return rows


async def lock_school(conn: asyncpg.Connection, school_id: uuid.UUID) -> None:
    """Serialise the last limit check and the insert of a school's attachments until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1)", zlib.crc32(f"media-attachment:{school_id}".encode())
    )


async def check_limits(
    conn: asyncpg.Connection, settings: Settings, person_id: uuid.UUID, school_id: uuid.UUID
) -> None:
    """TooManyRequests (429, with retry_after in seconds) if one more upload would pass a limit: per person
    per hour (refused uploads count too: judging them cost as much), unused per person, per school per hour."""
    now: datetime = await conn.fetchval("SELECT now()")
    per_hour = settings.attachment_uploads_per_person_per_hour
    hour = await conn.fetchrow(
        """WITH recent AS (
               SELECT created_at AS at FROM attachments WHERE uploader_id = $1 AND created_at > $2
               UNION ALL
               SELECT refused_at FROM attachment_refusals WHERE person_id = $1 AND refused_at > $2)
           SELECT count(*) AS uploads, min(at) AS oldest FROM recent""",
        person_id,
        now - _HOUR,
    )
    if hour["uploads"] >= per_hour:
        raise TooManyRequests(
            f"at most {per_hour} attachments an hour (refused ones count too); try again later",
            retry_after=_seconds_until(hour["oldest"] + _HOUR, now),
        )
    unused = await conn.fetchrow(
        """SELECT count(*) AS unused, min(created_at) AS oldest FROM attachments
           WHERE uploader_id = $1 AND status = 'uploaded'""",
        person_id,
    )
    if unused["unused"] >= settings.attachment_unused_per_person:
        raise TooManyRequests(
            f"{unused['unused']} uploaded attachments are not in a post yet; post them first "
            "(unused attachments are deleted after a day)",
            retry_after=_seconds_until(
                unused["oldest"] + timedelta(seconds=settings.attachment_unused_ttl_seconds), now
            ),
        )
    per_school = settings.attachment_uploads_per_school_per_hour
    school = await conn.fetchrow(
        "SELECT count(*) AS uploads, min(created_at) AS oldest FROM attachments WHERE school_id = $1 AND created_at > $2",
        school_id,
        now - _HOUR,
    )
    if school["uploads"] >= per_school:
        raise TooManyRequests(
            f"the school's limit of {per_school} attachments an hour is reached; try again later",
            retry_after=_seconds_until(school["oldest"] + _HOUR, now),
        )


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


async def record_refusal(conn: asyncpg.Connection, person_id: uuid.UUID, school_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO attachment_refusals (person_id, school_id) VALUES ($1, $2)", person_id, school_id
    )


async def forget_refusals(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM attachment_refusals WHERE refused_at < now() - interval '1 hour'")
