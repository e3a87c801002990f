"""Media's SQL."""

import uuid
from datetime import date, datetime

import asyncpg

from media.domain import CLAIM_SECONDS
from shared.contracts import SchoolChanged


async def insert_photo(
    conn: asyncpg.Connection,
    photo_id: uuid.UUID,
    school_id: uuid.UUID,
    group_id: uuid.UUID,
    uploader_id: uuid.UUID,
    content_type: str,
    size_bytes: int,
    original_key: str,
    correlation_id: str | None = None,
) -> None:
    """A photo accepted at upload: processing starts at once (its logs carry the upload's correlation id)."""
    await conn.execute(
        """INSERT INTO photos (photo_id, school_id, group_id, uploader_id, content_type, size_bytes, original_key,
                               status, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing', $8)""",
        photo_id,
        school_id,
        group_id,
        uploader_id,
        content_type,
        size_bytes,
        original_key,
        correlation_id,
    )


async def visible_photo(
    conn: asyncpg.Connection, photo_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """The photo if the person uploaded it and it is in no post yet, or it is in a post and the person
    belongs to its group now; otherwise nothing. Until it is posted, a photo is its uploader's alone,
    colleagues in the group included; once posted, the group's, so an uploader who no longer teaches the
    group loses it with the rest of the group's photos (as an attachment's uploader does)."""
    return await conn.fetchrow(
        """SELECT p.photo_id, p.school_id, p.status, p.reject_reason FROM photos p
           WHERE p.photo_id = $1 AND (
               (p.post_id IS NULL AND p.uploader_id = $2)
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
) -> list[asyncpg.Record]:
    """Attach to the post the photos it may carry: the uploader's own, of the post's group, in no post,
    processing or ready, showing no child without photo consent (posts checked the same on its copy;
    this holds whatever the copy missed). Returns those attached: photo_id, status and, for a ready one,
    its variant sizes."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE photos p SET post_id = $3, correlation_id = COALESCE(p.correlation_id, $5)
           WHERE p.photo_id = ANY($1) AND p.uploader_id = $2 AND p.group_id = $4 AND p.post_id IS NULL
             AND p.status IN ('processing', 'ready') AND p.erase_requested_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM photo_children t LEFT JOIN children c USING (child_id)
                             WHERE t.photo_id = p.photo_id AND NOT COALESCE(c.photo_consent AND NOT c.erased, false))
           RETURNING p.photo_id, p.status,
                     ARRAY(SELECT size FROM photo_variants v WHERE v.photo_id = p.photo_id ORDER BY size DESC) AS sizes""",
        photo_ids,
        uploader_id,
        post_id,
        group_id,
        correlation_id,
    )
    return rows


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


async def lock_photo(conn: asyncpg.Connection, photo_id: uuid.UUID) -> bool:
    """Lock the photo's row until the transaction ends; False when it is gone (deleted: erasure, retention,
    clean-up). A deletion that holds the row first commits before this returns."""
    found = await conn.fetchval("SELECT 1 FROM photos WHERE photo_id = $1 FOR UPDATE", photo_id)
    return found is not None


async def mark_ready(
    conn: asyncpg.Connection,
    photo_id: uuid.UUID,
    width: int,
    height: int,
    variants: list[tuple[int, str, int, int, int]],
) -> asyncpg.Record | None:
    """Mark a photo still processing ready; its row (post_id: the post it is in, if any) when it was."""
    await conn.executemany(
        """INSERT INTO photo_variants (photo_id, size, key, width, height, bytes) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (photo_id, size) DO UPDATE SET key = EXCLUDED.key, width = EXCLUDED.width,
             height = EXCLUDED.height, bytes = EXCLUDED.bytes""",
        [(photo_id, *v) for v in variants],
    )
    # Only a photo still processing: one taken out of its post meanwhile stays rejected (the clean-up
    # then deletes the variants just written).
    return await conn.fetchrow(
        """UPDATE photos SET status = 'ready', width = $2, height = $3, processed_at = now(), claimed_until = NULL
           WHERE photo_id = $1 AND status = 'processing' RETURNING post_id""",
        photo_id,
        width,
        height,
    )


async def mark_rejected(conn: asyncpg.Connection, photo_id: uuid.UUID, reason: str) -> uuid.UUID | None:
    """Reject the photo; the post it is in, if any."""
    post_id: uuid.UUID | None = await conn.fetchval(
        """UPDATE photos SET status = 'rejected', reject_reason = $2, processed_at = now(), claimed_until = NULL
           WHERE photo_id = $1 RETURNING post_id""",
        photo_id,
        reason,
    )
    return post_id


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
    school_id: uuid.UUID | None = await conn.fetchval(
        "SELECT school_id FROM groups WHERE group_id = $1", group_id
    )
    return school_id


async def upsert_group(
    conn: asyncpg.Connection,
    group_id: uuid.UUID,
    school_id: uuid.UUID,
    year_ends_on: date | None,
    revision: int,
) -> None:
    await conn.execute(
        """INSERT INTO groups (group_id, school_id, year_ends_on, revision) VALUES ($1, $2, $3, $4)
           ON CONFLICT (group_id) DO UPDATE SET school_id = EXCLUDED.school_id,
             year_ends_on = EXCLUDED.year_ends_on, revision = EXCLUDED.revision
             WHERE groups.revision < EXCLUDED.revision""",
        group_id,
        school_id,
        year_ends_on,
        revision,
    )


async def upsert_school(conn: asyncpg.Connection, school: SchoolChanged) -> None:
    """Keep what media needs of a school, unless the copy holds a newer revision."""
    await conn.execute(
        """INSERT INTO schools (school_id, name, locale, time_zone, watermark_photos, photo_retention_days,
                                share_notice, revision)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (school_id) DO UPDATE SET name = EXCLUDED.name, locale = EXCLUDED.locale,
             time_zone = EXCLUDED.time_zone, watermark_photos = EXCLUDED.watermark_photos,
             photo_retention_days = EXCLUDED.photo_retention_days, share_notice = EXCLUDED.share_notice,
             revision = EXCLUDED.revision
           WHERE schools.revision < EXCLUDED.revision""",
        school.school_id,
        school.name,
        school.locale,
        school.time_zone,
        school.watermark_photos,
        school.photo_retention_days,
        school.share_notice,
        school.revision,
    )


async def school(conn: asyncpg.Connection, school_id: uuid.UUID) -> asyncpg.Record | None:
    """The copy of a school: name, locale, watermark_photos, share_notice (None until SchoolChanged came)."""
    return await conn.fetchrow(
        "SELECT name, locale, watermark_photos, share_notice FROM schools WHERE school_id = $1", school_id
    )


async def unused_uploads(
    conn: asyncpg.Connection, older_than_seconds: int, limit: int
) -> list[asyncpg.Record]:
    """Delete (in the caller's transaction) uploads no post took within the time, processed or not; their
    keys to delete from storage before the transaction commits (original_key, variant_keys) and what
    PhotoChanged needs. Locked rows (a post attaching them now) and photos being processed are skipped, as
    are photos a send-later post reserves (media.reservations); one it let go counts from its release."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH unused AS (
               SELECT photo_id FROM photos
               WHERE post_id IS NULL AND status <> 'rejected' AND NOT reserved
                 AND GREATEST(created_at, released_at) < now() - $1 * interval '1 second'
                 AND (claimed_until IS NULL OR claimed_until < now())
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
           keys AS (
               SELECT u.photo_id, COALESCE(array_agg(v.key) FILTER (WHERE v.key IS NOT NULL), '{}') AS variant_keys
               FROM unused u LEFT JOIN photo_variants v USING (photo_id) GROUP BY u.photo_id)
           DELETE FROM photos p USING keys k WHERE p.photo_id = k.photo_id
           RETURNING p.photo_id, p.school_id, p.group_id, p.uploader_id, p.original_key, k.variant_keys""",
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
    return {
        r["photo_id"] for r in await conn.fetch("SELECT photo_id FROM photos WHERE post_id = $1", post_id)
    }


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


async def expired_photos(conn: asyncpg.Connection, limit: int, at: datetime | None) -> list[asyncpg.Record]:
    """Photos past their school's retention at `at` (default now), locked for the caller's transaction:
    the school's local date is later than the group's last school day plus `photo_retention_days`. A school
    media has no copy of yet counts with identity's defaults; a group without a known year end is kept.
    Photos still being processed wait for the next round (their variants are being written)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT p.photo_id, p.school_id, p.original_key,
                  ARRAY(SELECT v.key FROM photo_variants v WHERE v.photo_id = p.photo_id) AS variant_keys
           FROM photos p JOIN groups g USING (group_id) LEFT JOIN schools s ON s.school_id = g.school_id
           WHERE p.status IN ('ready', 'rejected') AND g.year_ends_on IS NOT NULL
             AND (coalesce($2, now()) AT TIME ZONE coalesce(s.time_zone, 'Europe/Amsterdam'))::date
                 > g.year_ends_on + coalesce(s.photo_retention_days, 365)
           ORDER BY g.year_ends_on, p.photo_id LIMIT $1 FOR UPDATE OF p SKIP LOCKED""",
        limit,
        at,
    )
    return rows


async def delete_photos(conn: asyncpg.Connection, photo_ids: list[uuid.UUID]) -> None:
    """The rows of the photos and (cascading) of their variants."""
    await conn.execute("DELETE FROM photos WHERE photo_id = ANY($1::uuid[])", photo_ids)


async def record_purge(
    conn: asyncpg.Connection, schools: int, photos: int, variants: int, originals: int
) -> None:
    await conn.execute(
        "INSERT INTO photo_purges (schools, photos, variants, originals) VALUES ($1, $2, $3, $4)",
        schools,
        photos,
        variants,
        originals,
    )


async def purge_totals(conn: asyncpg.Connection) -> asyncpg.Record:
    """What retention removed since the database was made: photos, variants, originals (sums), and the
    epoch seconds of the last round that removed anything (0 when none did)."""
    row: asyncpg.Record = await conn.fetchrow(
        """SELECT coalesce(sum(photos), 0) AS photos, coalesce(sum(variants), 0) AS variants,
                  coalesce(sum(originals), 0) AS originals,
                  coalesce(extract(epoch FROM max(purged_at)), 0) AS last_purge
           FROM photo_purges"""
    )
    return row


async def list_leftover_variants(conn: asyncpg.Connection, keys: list[str]) -> None:
    """Note variant keys of a deleted photo for the clean-up to delete (if the one who wrote them cannot)."""
    await conn.executemany(
        "INSERT INTO leftover_variants (key) VALUES ($1) ON CONFLICT DO NOTHING", [(key,) for key in keys]
    )


async def forget_leftover_variants(conn: asyncpg.Connection, keys: list[str]) -> None:
    """The keys deleted from storage."""
    await conn.execute("DELETE FROM leftover_variants WHERE key = ANY($1::text[])", keys)


async def take_leftover_variants(conn: asyncpg.Connection, limit: int) -> list[str]:
    """Delete (in the caller's transaction) up to `limit` noted leftover variants, returning their keys to
    delete from storage before the transaction commits."""
    rows = await conn.fetch(
        """DELETE FROM leftover_variants WHERE key IN (
               SELECT key FROM leftover_variants ORDER BY listed_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING key""",
        limit,
    )
    return [str(r["key"]) for r in rows]
