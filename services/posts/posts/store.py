"""Posts' SQL for what it keeps of other services' data: groups, and the state of its photos."""

import uuid
from datetime import date

import asyncpg


async def upsert_group(
    conn: asyncpg.Connection,
    group_id: uuid.UUID,
    school_id: uuid.UUID,
    name: str,
    year: str,
    revision: int,
    year_starts_on: date | None = None,
    year_ends_on: date | None = None,
) -> None:
    """Keep a group's name, school year and the year's first and last day, unless the copy already
    holds a newer revision. Dates left out (an event from before identity sent them) keep the copy's;
    the same revision again with dates fills a row copied without them (identity.republish)."""
    await conn.execute(
        """INSERT INTO groups (group_id, school_id, name, school_year, revision, year_starts_on, year_ends_on)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (group_id) DO UPDATE SET name = EXCLUDED.name,
             school_year = EXCLUDED.school_year, revision = EXCLUDED.revision,
             year_starts_on = COALESCE(EXCLUDED.year_starts_on, groups.year_starts_on),
             year_ends_on = COALESCE(EXCLUDED.year_ends_on, groups.year_ends_on)
           WHERE groups.revision < EXCLUDED.revision
              OR (groups.revision = EXCLUDED.revision AND groups.year_starts_on IS NULL
                  AND EXCLUDED.year_starts_on IS NOT NULL)""",
        group_id,
        school_id,
        name,
        year,
        revision,
        year_starts_on,
        year_ends_on,
    )


async def set_photo_status(
    conn: asyncpg.Connection, post_id: uuid.UUID, photo_id: uuid.UUID, status: str
) -> None:
    # By post too: a photo id can be named in more than one post, and only one of them owns it.
    await conn.execute(
        "UPDATE post_photos SET status = $3 WHERE post_id = $1 AND photo_id = $2", post_id, photo_id, status
    )


async def forget_photos(conn: asyncpg.Connection, photo_ids: list[uuid.UUID]) -> None:
    """Photos media deleted for good (retention): they leave every post that named them."""
    await conn.execute("DELETE FROM post_photos WHERE photo_id = ANY($1::uuid[])", photo_ids)
