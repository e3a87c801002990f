"""Media's SQL."""

import uuid

import asyncpg

from media.domain import CLAIM_SECONDS


async def insert_photo(
    conn: asyncpg.Connection,
    photo_id: uuid.UUID,
    school_id: uuid.UUID,
    group_id: uuid.UUID,
    uploader_id: uuid.UUID,
    content_type: str,
    size_bytes: int,
    original_key: str,
) -> None:
    await conn.execute(
        """INSERT INTO photos (photo_id, school_id, group_id, uploader_id, content_type, size_bytes, original_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        photo_id,
        school_id,
        group_id,
        uploader_id,
        content_type,
        size_bytes,
        original_key,
    )


async def visible_photo(
    conn: asyncpg.Connection, photo_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """The photo if the person uploaded it, or it is in a post and the person belongs to its group now;
    otherwise nothing. Until it is posted, a photo is its uploader's alone, colleagues in the group included."""
    return await conn.fetchrow(
        """SELECT p.photo_id, p.school_id, p.status, p.reject_reason FROM photos p
           WHERE p.photo_id = $1 AND (
               p.uploader_id = $2
               OR (p.post_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM memberships m WHERE m.group_id = p.group_id AND m.person_id = $2 AND m.active)))""",
        photo_id,
        person_id,
    )


async def variants(conn: asyncpg.Connection, photo_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT size, key, width, height FROM photo_variants WHERE photo_id = $1 ORDER BY size DESC", photo_id
    )
    return rows


async def attach_to_post(
    conn: asyncpg.Connection,
    photo_ids: list[uuid.UUID],
    uploader_id: uuid.UUID,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    correlation_id: str | None,
) -> list[uuid.UUID]:
    """Attach the uploader's own unattached photos to the post and queue them; return those attached."""
    rows = await conn.fetch(
        """UPDATE photos SET post_id = $3, group_id = $4, status = 'processing', correlation_id = $5
           WHERE photo_id = ANY($1) AND uploader_id = $2 AND post_id IS NULL AND status = 'uploaded'
           RETURNING photo_id""",
        photo_ids,
        uploader_id,
        post_id,
        group_id,
        correlation_id,
    )
    return [r["photo_id"] for r in rows]


async def claim(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Take photos to process; a claim runs out, so a crashed worker's photo is taken up again."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE photos SET claimed_until = now() + $2 * interval '1 second', attempts = attempts + 1
            WHERE photo_id IN (
                SELECT photo_id FROM photos
                WHERE status = 'processing' AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING photo_id, school_id, post_id, original_key, attempts, correlation_id""",
        limit,
        CLAIM_SECONDS,
    )
    return rows


async def mark_ready(
    conn: asyncpg.Connection,
    photo_id: uuid.UUID,
    width: int,
    height: int,
    variants: list[tuple[int, str, int, int, int]],
) -> None:
    await conn.executemany(
        """INSERT INTO photo_variants (photo_id, size, key, width, height, bytes) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (photo_id, size) DO UPDATE SET key = EXCLUDED.key, width = EXCLUDED.width,
             height = EXCLUDED.height, bytes = EXCLUDED.bytes""",
        [(photo_id, *v) for v in variants],
    )
    # Only a photo still processing: one taken out of its post meanwhile stays rejected (the clean-up
    # then deletes the variants just written).
    await conn.execute(
        """UPDATE photos SET status = 'ready', width = $2, height = $3, processed_at = now(), claimed_until = NULL
           WHERE photo_id = $1 AND status = 'processing'""",
        photo_id,
        width,
        height,
    )


async def mark_rejected(conn: asyncpg.Connection, photo_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        """UPDATE photos SET status = 'rejected', reject_reason = $2, processed_at = now(), claimed_until = NULL
           WHERE photo_id = $1""",
        photo_id,
        reason,
    )


async def release(
    conn: asyncpg.Connection, photo_id: uuid.UUID, retry_in_seconds: float, *, counted: bool = True
) -> None:
    """Give a claim back after a passing failure, to be tried again after a pause. An attempt that failed
    for want of storage is not `counted` towards giving the photo up: it is tried until storage is back."""
    await conn.execute(
        """UPDATE photos SET claimed_until = now() + $2 * interval '1 second',
                             attempts = attempts - CASE WHEN $3 THEN 0 ELSE 1 END
           WHERE photo_id = $1""",
        photo_id,
        retry_in_seconds,
        counted,
    )


async def school_of_group(conn: asyncpg.Connection, group_id: uuid.UUID) -> uuid.UUID | None:
    school_id: uuid.UUID | None = await conn.fetchval("SELECT school_id FROM groups WHERE group_id = $1", group_id)
    return school_id


async def upsert_group(conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID, revision: int) -> None:
    await conn.execute(
        """INSERT INTO groups (group_id, school_id, revision) VALUES ($1, $2, $3)
           ON CONFLICT (group_id) DO UPDATE SET school_id = EXCLUDED.school_id, revision = EXCLUDED.revision
             WHERE groups.revision < EXCLUDED.revision""",
        group_id,
        school_id,
        revision,
    )


async def unused_uploads(conn: asyncpg.Connection, older_than_seconds: int, limit: int) -> list[asyncpg.Record]:
    """Delete (in the caller's transaction) uploads no post took within the time; their keys to delete
    from storage before the transaction commits. Locked rows (a post attaching them now) are skipped."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """DELETE FROM photos WHERE photo_id IN (
               SELECT photo_id FROM photos
               WHERE status = 'uploaded' AND created_at < now() - $1 * interval '1 second'
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING photo_id, original_key""",
        older_than_seconds,
        limit,
    )
    return rows


async def forget_originals(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Clear the keys of originals whose photo is ready or rejected (in the caller's transaction), returning
    them, to be deleted from storage before the transaction commits."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH done AS (
               SELECT photo_id, original_key FROM photos
               WHERE status IN ('ready', 'rejected') AND original_key IS NOT NULL
               ORDER BY processed_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE photos p SET original_key = NULL FROM done WHERE p.photo_id = done.photo_id
           RETURNING done.photo_id, done.original_key""",
        limit,
    )
    return rows


async def forget_original(conn: asyncpg.Connection, photo_id: uuid.UUID) -> None:
    await conn.execute("UPDATE photos SET original_key = NULL WHERE photo_id = $1", photo_id)


async def drop_from_post(
    conn: asyncpg.Connection, post_id: uuid.UUID, keep: list[uuid.UUID] | None = None
) -> list[uuid.UUID]:
    """Photos taken out of a post (all of them when it was deleted; those not in ``keep`` when it was
    edited): no longer the group's, and rejected, so no link to them is handed out again and the
    clean-up deletes their originals. Returns their ids."""
    rows = await conn.fetch(
        """UPDATE photos SET post_id = NULL, status = 'rejected', reject_reason = 'taken out of its post',
                             processed_at = now(), claimed_until = NULL
           WHERE post_id = $1 AND photo_id <> ALL(COALESCE($2::uuid[], '{}'))
           RETURNING photo_id""",
        post_id,
        keep,
    )
    return [r["photo_id"] for r in rows]


async def in_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> set[uuid.UUID]:
    return {r["photo_id"] for r in await conn.fetch("SELECT photo_id FROM photos WHERE post_id = $1", post_id)}


async def forget_variants_of_rejected(conn: asyncpg.Connection, limit: int) -> list[str]:
    """Delete the variant rows of rejected photos (one taken out of its post had been ready) in the
    caller's transaction, returning their keys, to be deleted from storage before the transaction commits."""
    rows = await conn.fetch(
        """DELETE FROM photo_variants WHERE (photo_id, size) IN (
               SELECT v.photo_id, v.size FROM photo_variants v JOIN photos p USING (photo_id)
               WHERE p.status = 'rejected' LIMIT $1 FOR UPDATE OF v SKIP LOCKED)
           RETURNING key""",
        limit,
    )
    return [r["key"] for r in rows]
