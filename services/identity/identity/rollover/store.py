"""Promotion of whole groups into the next school year: SQL."""

import uuid
from collections import Counter

import asyncpg

from identity.rollover.domain import SourceGroup


async def lock_school_year(conn: asyncpg.Connection, school_year_id: uuid.UUID) -> asyncpg.Record | None:
    """The target year, locked until commit: two promotions into one year run one after the other."""
    return await conn.fetchrow(
        """SELECT school_year_id, school_id, name, starts_on, ends_on FROM school_years
           WHERE school_year_id = $1 FOR UPDATE""",
        school_year_id,
    )


async def source_year(
    conn: asyncpg.Connection, school_id: uuid.UUID, target: asyncpg.Record, name_or_id: str | None
) -> asyncpg.Record | None:
    """The school's year named (or with the id) ``name_or_id``; by default the one that ends last
    before ``target`` starts."""
    if name_or_id is None:
        return await conn.fetchrow(
            """SELECT school_year_id, name, starts_on, ends_on FROM school_years
               WHERE school_id = $1 AND ends_on < $2 ORDER BY ends_on DESC LIMIT 1""",
            school_id,
            target["starts_on"],
        )
    return await conn.fetchrow(
        """SELECT school_year_id, name, starts_on, ends_on FROM school_years
           WHERE school_id = $1 AND (name = $2 OR school_year_id::text = lower($2))""",
        school_id,
        name_or_id,
    )


async def source_groups(
    conn: asyncpg.Connection, source_year_id: uuid.UUID, target_year_id: uuid.UUID
) -> list[SourceGroup]:
    """Every group of the source year with its children who have not left, and how many of those
    already have a placement in the target year."""
    rows = await conn.fetch(
        """SELECT g.group_id, g.name, count(c.child_id) AS children, count(t.child_id) AS already_placed
           FROM groups g
           LEFT JOIN placements p ON p.group_id = g.group_id
           LEFT JOIN children c ON c.child_id = p.child_id AND c.left_on IS NULL
           LEFT JOIN placements t ON t.child_id = c.child_id AND t.school_year_id = $2
           WHERE g.school_year_id = $1
           GROUP BY g.group_id""",
        source_year_id,
        target_year_id,
    )
    return [SourceGroup(r["group_id"], r["name"], r["children"], r["already_placed"]) for r in rows]


async def target_groups(conn: asyncpg.Connection, target_year_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT group_id, name, promoted_from FROM groups WHERE school_year_id = $1", target_year_id
    )
    return rows


async def other_children_in(conn: asyncpg.Connection, group_id: uuid.UUID, source_group_id: uuid.UUID) -> int:
    """Children placed in ``group_id`` who did not come from ``source_group_id``."""
    count: int = await conn.fetchval(
        """SELECT count(*) FROM placements p
           WHERE p.group_id = $1
             AND NOT EXISTS (SELECT 1 FROM placements s WHERE s.child_id = p.child_id AND s.group_id = $2)""",
        group_id,
        source_group_id,
    )
    return count


async def mark_promoted(conn: asyncpg.Connection, group_id: uuid.UUID, source_group_id: uuid.UUID) -> None:
    await conn.execute("UPDATE groups SET promoted_from = $2 WHERE group_id = $1", group_id, source_group_id)


async def non_teachers(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """Those of ``person_ids`` who are not teachers at the school."""
    rows = await conn.fetch(
        """SELECT id FROM unnest($2::uuid[]) AS id
           WHERE NOT EXISTS (SELECT 1 FROM staff WHERE school_id = $1 AND person_id = id AND role = 'teacher')""",
        school_id,
        person_ids,
    )
    return [r["id"] for r in rows]


async def place_children(
    conn: asyncpg.Connection, target_year_id: uuid.UUID, moves: list[tuple[uuid.UUID, uuid.UUID]]
) -> Counter[uuid.UUID]:
    """Place every child of each (source group, successor) pair who has not left and has no
    placement in the target year yet; how many were placed per successor."""
    rows = await conn.fetch(
        """INSERT INTO placements (child_id, school_year_id, group_id)
           SELECT p.child_id, $1, m.successor
           FROM unnest($2::uuid[], $3::uuid[]) AS m(source, successor)
           JOIN placements p ON p.group_id = m.source
           JOIN children c ON c.child_id = p.child_id AND c.left_on IS NULL
           ON CONFLICT (child_id, school_year_id) DO NOTHING
           RETURNING group_id""",
        target_year_id,
        [source for source, _ in moves],
        [successor for _, successor in moves],
    )
    return Counter(r["group_id"] for r in rows)
