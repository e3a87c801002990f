"""Attachments' SQL: the uploads, their posts, the limits' counts, and what is to be deleted."""

import math
import uuid
import zlib
from datetime import datetime, timedelta

import asyncpg

from media.settings import Settings
from shared.errors import TooManyRequests

# Attachments taken out of sight (their post deleted or edited) are deleted from storage by the
# removal drainer, woken on this channel.
REMOVED_CHANNEL = "media_attachments_removed"
_HOUR = timedelta(hours=1)


async def insert(
    conn: asyncpg.Connection,
    attachment_id: uuid.UUID,
    school_id: uuid.UUID,
    group_id: uuid.UUID,
    uploader_id: uuid.UUID,
    filename: str,
    content_type: str,
    size_bytes: int,
    key: str,
) -> None:
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
    """The attachment if the person uploaded it and it is not removed, or it is in a post and the person
    belongs to the post's group now; otherwise nothing (a colleague does not see an unposted upload)."""
    return await conn.fetchrow(
        """SELECT a.attachment_id, a.filename, a.content_type, a.size_bytes, a.key FROM attachments a
           WHERE a.attachment_id = $1 AND (
               (a.status = 'uploaded' AND a.uploader_id = $2)
               OR (a.status = 'attached' AND EXISTS (
                   SELECT 1 FROM memberships m WHERE m.group_id = a.group_id AND m.person_id = $2 AND m.active)))""",
        attachment_id,
        person_id,
    )


async def attach(
    conn: asyncpg.Connection,
    attachment_ids: list[uuid.UUID],
    uploader_id: uuid.UUID,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
) -> list[uuid.UUID]:
    """Attach the uploader's own unused uploads for the group to the post; return those attached (one
    already in this post counts as attached)."""
    rows = await conn.fetch(
        """UPDATE attachments SET post_id = $3, status = 'attached'
           WHERE attachment_id = ANY($1) AND uploader_id = $2 AND group_id = $4
             AND (status = 'uploaded' OR (status = 'attached' AND post_id = $3))
           RETURNING attachment_id""",
        attachment_ids,
        uploader_id,
        post_id,
        group_id,
    )
    return [r["attachment_id"] for r in rows]


async def in_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT attachment_id FROM attachments WHERE post_id = $1 AND status = 'attached'", post_id
    )
    return {r["attachment_id"] for r in rows}


async def remove_from_post(
    conn: asyncpg.Connection, post_id: uuid.UUID, keep: list[uuid.UUID] | None = None
) -> int:
    """Take a post's attachments out of sight (all when it was deleted; those not in ``keep`` after an
    edit) and wake the removal drainer, which deletes them from storage. Returns how many."""
    removed: str = await conn.execute(
        """UPDATE attachments SET status = 'removed'
           WHERE post_id = $1 AND status = 'attached' AND attachment_id <> ALL(COALESCE($2::uuid[], '{}'))""",
        post_id,
        keep,
    )
    count = int(removed.split()[-1])
    if count:
        await conn.execute("SELECT pg_notify($1, '')", REMOVED_CHANNEL)
    return count


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
