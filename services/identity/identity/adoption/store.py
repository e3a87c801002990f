"""Adoption's SQL: per group of a school year, its placed children and how far their guardians are."""

import uuid

import asyncpg

from identity.invitations.store import OPEN_CODE

_PER_GROUP = f"""
    WITH families AS (
        SELECT p.group_id,
               EXISTS (SELECT 1 FROM guardianships gs
                       WHERE gs.child_id = c.child_id AND gs.person_id IS NOT NULL) AS linked,
               EXISTS (SELECT 1 FROM guardianships gs JOIN access_codes ac USING (guardianship_id)
                       WHERE gs.child_id = c.child_id
                         AND (ac.used_at IS NOT NULL OR ({OPEN_CODE}))) AS invited
        FROM placements p JOIN children c USING (child_id)
        WHERE p.school_year_id = $1 AND c.left_on IS NULL
    )
    SELECT g.group_id, g.name,
           count(f.group_id)::int AS placed,
           (count(*) FILTER (WHERE f.invited OR f.linked))::int AS invited,
           (count(*) FILTER (WHERE f.linked))::int AS linked
    FROM groups g LEFT JOIN families f USING (group_id)
    WHERE g.school_year_id = $1
    GROUP BY g.group_id, g.name
    ORDER BY g.name, g.group_id
"""  # noqa: S608 - a constant, no input


async def per_group(conn: asyncpg.Connection, school_year_id: uuid.UUID) -> list[asyncpg.Record]:
    """One row per group of the year: group_id, name, placed, invited, linked (counts of children)."""
    rows: list[asyncpg.Record] = await conn.fetch(_PER_GROUP, school_year_id)
    return rows


async def year_of(conn: asyncpg.Connection, school_id: uuid.UUID, name: str | None) -> asyncpg.Record | None:
    """The school year called ``name``, or the current one: school_year_id and name; None if none."""
    if name is not None:
        return await conn.fetchrow(
            "SELECT school_year_id, name FROM school_years WHERE school_id = $1 AND name = $2",
            school_id,
            name,
        )
    return await conn.fetchrow(
        """SELECT y.school_year_id, y.name FROM schools s JOIN school_years y ON y.school_year_id = s.current_year_id
           WHERE s.school_id = $1""",
        school_id,
    )
