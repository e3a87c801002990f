"""SQL of tags, the consent copy and erasure marks."""

import uuid

import asyncpg

from shared.contracts import ChildChanged


async def upsert_child(conn: asyncpg.Connection, event: ChildChanged) -> bool:
    """Keep the child's consent unless the copy holds a newer revision or the child was erased; True
    when the consent stored changed (the child's photos then have a new state to announce)."""
    changed = await conn.fetchval(
        """WITH before AS (SELECT photo_consent FROM children WHERE child_id = $1)
           INSERT INTO children (child_id, school_id, photo_consent, revision) VALUES ($1, $2, $3, $4)
           ON CONFLICT (child_id) DO UPDATE SET photo_consent = EXCLUDED.photo_consent, revision = EXCLUDED.revision
             WHERE children.revision < EXCLUDED.revision AND NOT children.erased
           RETURNING photo_consent IS DISTINCT FROM (SELECT photo_consent FROM before)""",
        event.child_id,
        event.school_id,
        event.photo_consent,
        event.revision,
    )
    return bool(changed)


async def photos_of_child(conn: asyncpg.Connection, child_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT photo_id FROM photo_children WHERE child_id = $1", child_id)
    return [r["photo_id"] for r in rows]


async def erase_child(
    conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Forget the child (a row without consent stays, marked erased) and mark every photo tagged with
    the child for erasure: out of its post and out of sight at once. Returns the photos marked
    (photo_id, school_id, group_id, uploader_id)."""
    await conn.execute(
        """INSERT INTO children (child_id, school_id, photo_consent, erased, revision) VALUES ($1, $2, false, true, 0)
           ON CONFLICT (child_id) DO UPDATE SET photo_consent = false, erased = true""",
        child_id,
        school_id,
    )
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE photos p SET erase_requested_at = now(), post_id = NULL, status = 'rejected',
                               reject_reason = 'erased', claimed_until = NULL
           FROM photo_children t
           WHERE t.child_id = $1 AND t.photo_id = p.photo_id
           RETURNING p.photo_id, p.school_id, p.group_id, p.uploader_id""",
        child_id,
    )
    return rows


async def photo_for_tagging(
    conn: asyncpg.Connection, photo_id: uuid.UUID, *, lock: bool = True
) -> asyncpg.Record | None:
    """The photo (not being erased); ``lock``: locked for a change of its tags."""
    return await conn.fetchrow(
        f"""SELECT photo_id, school_id, group_id, uploader_id, status, post_id FROM photos
            WHERE photo_id = $1 AND erase_requested_at IS NULL {"FOR UPDATE" if lock else ""}""",  # noqa: S608 - constant
        photo_id,
    )


async def known_children(
    conn: asyncpg.Connection, school_id: uuid.UUID, child_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of ``child_ids`` that are children of the school (not erased)."""
    rows = await conn.fetch(
        "SELECT child_id FROM children WHERE child_id = ANY($1::uuid[]) AND school_id = $2 AND NOT erased",
        child_ids,
        school_id,
    )
    return {r["child_id"] for r in rows}


async def set_tags(
    conn: asyncpg.Connection, photo_id: uuid.UUID, child_ids: list[uuid.UUID], tagged_by: uuid.UUID
) -> bool:
    """Make the photo's tags exactly ``child_ids``; True when they changed."""
    removed = await conn.fetch(
        "DELETE FROM photo_children WHERE photo_id = $1 AND child_id <> ALL($2::uuid[]) RETURNING child_id",
        photo_id,
        child_ids,
    )
    added = await conn.fetch(
        """INSERT INTO photo_children (photo_id, child_id, tagged_by)
           SELECT $1, c, $3 FROM unnest($2::uuid[]) AS c ON CONFLICT DO NOTHING RETURNING child_id""",
        photo_id,
        child_ids,
        tagged_by,
    )
    return bool(removed or added)


async def tags(conn: asyncpg.Connection, photo_id: uuid.UUID) -> list[asyncpg.Record]:
    """The photo's tagged children with their consent now (false for a child not known yet)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT t.child_id, COALESCE(c.photo_consent AND NOT c.erased, false) AS photo_consent
           FROM photo_children t LEFT JOIN children c USING (child_id)
           WHERE t.photo_id = $1 ORDER BY t.child_id""",
        photo_id,
    )
    return rows


async def to_erase(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Delete (in the caller's transaction) photos marked for erasure, returning what is to be deleted
    from storage before the transaction commits: photo_id, school_id, original_key, variant_keys."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """WITH marked AS (
               SELECT photo_id FROM photos WHERE erase_requested_at IS NOT NULL
               ORDER BY erase_requested_at LIMIT $1 FOR UPDATE SKIP LOCKED),
           keys AS (
               SELECT m.photo_id, COALESCE(array_agg(v.key) FILTER (WHERE v.key IS NOT NULL), '{}') AS variant_keys
               FROM marked m LEFT JOIN photo_variants v USING (photo_id) GROUP BY m.photo_id)
           DELETE FROM photos p USING keys k WHERE p.photo_id = k.photo_id
           RETURNING p.photo_id, p.school_id, p.original_key, k.variant_keys""",
        limit,
    )
    return rows
