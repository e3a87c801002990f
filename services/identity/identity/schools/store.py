"""Schools, school years, groups, staff and teaching: SQL."""

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from identity import memberships
from shared.contracts import GroupChanged, SchoolChanged, StaffChanged
from shared.outbox import publish

SCHOOL_COLUMNS = """s.school_id, s.name, s.time_zone, s.locale, s.max_posts_per_day, s.min_posts_per_week,
    s.digest_time, s.photo_retention_days, s.share_notice, s.watermark_photos, s.access_code_days, s.reminder_days,
    s.max_reminders, s.invitations_launched_at,
    (SELECT name FROM school_years y WHERE y.school_year_id = s.current_year_id) AS current_school_year"""

SETTINGS = (
    "name",
    "time_zone",
    "locale",
    "max_posts_per_day",
    "min_posts_per_week",
    "digest_time",
    "photo_retention_days",
    "share_notice",
    "watermark_photos",
    "access_code_days",
    "reminder_days",
    "max_reminders",
)


async def insert_school(
    conn: asyncpg.Connection, school_id: uuid.UUID, name: str, time_zone: str, locale: str
) -> None:
    await conn.execute(
        "INSERT INTO schools (school_id, name, time_zone, locale) VALUES ($1, $2, $3, $4)",
        school_id,
        name,
        time_zone,
        locale,
    )
    await publish_school(conn, school_id)


async def school(conn: asyncpg.Connection, school_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SCHOOL_COLUMNS} FROM schools s WHERE s.school_id = $1",  # noqa: S608 - constant
        school_id,
    )


async def update_school(conn: asyncpg.Connection, school_id: uuid.UUID, changes: dict[str, Any]) -> None:
    """Set the given settings (names from SETTINGS only) and tell the other services."""
    names = [name for name in SETTINGS if name in changes]
    if names:
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        await conn.execute(
            f"UPDATE schools SET {assignments} WHERE school_id = $1",  # noqa: S608 - names from SETTINGS
            school_id,
            *(changes[name] for name in names),
        )
    await publish_school(conn, school_id)


async def publish_school(conn: asyncpg.Connection, school_id: uuid.UUID) -> None:
    row = await conn.fetchrow(
        """UPDATE schools SET revision = nextval('change_revisions') WHERE school_id = $1
           RETURNING school_id, name, time_zone, locale, max_posts_per_day, min_posts_per_week,
                     to_char(digest_time, 'HH24:MI') AS digest_time, photo_retention_days, share_notice,
                     watermark_photos, revision""",
        school_id,
    )
    assert row is not None
    await publish(conn, SchoolChanged(**dict(row)), school_id)


async def insert_school_year(
    conn: asyncpg.Connection,
    school_year_id: uuid.UUID,
    school_id: uuid.UUID,
    name: str,
    starts: date,
    ends: date,
) -> str | None:
    """None when made; otherwise why not ("name" taken or "overlap" with another year)."""
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO school_years (school_year_id, school_id, name, starts_on, ends_on)
                   VALUES ($1, $2, $3, $4, $5)""",
                school_year_id,
                school_id,
                name,
                starts,
                ends,
            )
    except asyncpg.UniqueViolationError:
        return "name"
    except asyncpg.ExclusionViolationError:
        return "overlap"
    return None


async def school_years(conn: asyncpg.Connection, school_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT y.school_year_id, y.school_id, y.name, y.starts_on, y.ends_on,
                  y.school_year_id IS NOT DISTINCT FROM s.current_year_id AS current
           FROM school_years y JOIN schools s USING (school_id)
           WHERE y.school_id = $1 ORDER BY y.starts_on""",
        school_id,
    )
    return rows


async def school_year_by_name(
    conn: asyncpg.Connection, school_id: uuid.UUID, name: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT school_year_id, name FROM school_years WHERE school_id = $1 AND name = $2", school_id, name
    )


async def refresh_current_year(
    conn: asyncpg.Connection, school_id: uuid.UUID, at: datetime | None = None
) -> bool:
    """Make the year that holds the school's local date at ``at`` (default now) the current one, and
    derive the memberships anew when that changes (seed rule 3). True when it changed.

    Dates are local and inclusive: a year is current from 00:00 of its starts_on until 24:00 of its
    ends_on in the school's time zone. Between two years (a summer holiday without a year) no year is
    current, so access to the old year's groups ends after its ends_on and the new groups open on the
    new year's first day.
    """
    changed = await conn.fetchval(
        """WITH today AS (SELECT (coalesce($2, now()) AT TIME ZONE time_zone)::date AS d
                          FROM schools WHERE school_id = $1),
                year AS (SELECT (SELECT y.school_year_id FROM school_years y, today
                                 WHERE y.school_id = $1 AND today.d BETWEEN y.starts_on AND y.ends_on) AS id)
           UPDATE schools s SET current_year_id = year.id FROM year
           WHERE s.school_id = $1 AND s.current_year_id IS DISTINCT FROM year.id
           RETURNING true""",
        school_id,
        at,
    )
    if changed:
        await memberships.derive(conn, school_id)
    return bool(changed)


async def insert_group(
    conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID, school_year_id: uuid.UUID, name: str
) -> bool:
    """False when the school already has a group of that name in that year."""
    inserted = await conn.fetchval(
        """INSERT INTO groups (group_id, school_id, school_year_id, name) VALUES ($1, $2, $3, $4)
           ON CONFLICT (school_year_id, (lower(name))) DO NOTHING RETURNING true""",
        group_id,
        school_id,
        school_year_id,
        name,
    )
    if inserted:
        await publish_group(conn, group_id)
    return bool(inserted)


async def rename_group(conn: asyncpg.Connection, group_id: uuid.UUID, name: str) -> bool:
    """False when the year already has a group of that name."""
    try:
        async with conn.transaction():
            await conn.execute("UPDATE groups SET name = $2 WHERE group_id = $1", group_id, name)
    except asyncpg.UniqueViolationError:
        return False
    await publish_group(conn, group_id)
    return True


async def publish_group(conn: asyncpg.Connection, group_id: uuid.UUID) -> None:
    row = await conn.fetchrow(
        """UPDATE groups g SET revision = nextval('change_revisions') FROM school_years y
           WHERE g.group_id = $1 AND y.school_year_id = g.school_year_id
           RETURNING g.group_id, g.school_id, g.name, y.name AS school_year, y.starts_on AS year_starts_on,
                     y.ends_on AS year_ends_on, g.revision""",
        group_id,
    )
    assert row is not None
    await publish(conn, GroupChanged(**dict(row)), row["school_id"])


GROUP_VIEW = """SELECT g.group_id, g.school_id, g.name, y.name AS school_year, g.school_year_id,
       COALESCE((SELECT array_agg(t.person_id ORDER BY t.person_id) FROM teaching t WHERE t.group_id = g.group_id),
                '{}') AS teachers,
       (SELECT count(*) FROM placements p JOIN children c USING (child_id)
        WHERE p.group_id = g.group_id AND c.left_on IS NULL) AS children
    FROM groups g JOIN school_years y USING (school_year_id)"""


async def group(conn: asyncpg.Connection, group_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{GROUP_VIEW} WHERE g.group_id = $1", group_id)


async def groups_of_year(conn: asyncpg.Connection, school_year_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"{GROUP_VIEW} WHERE g.school_year_id = $1 ORDER BY g.name",
        school_year_id,
    )
    return rows


async def add_staff_role(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID, role: str, display_name: str
) -> None:
    """The school's own name for the person is kept with the role: showing the account's name would
    tell one school what another (or the person) called them."""
    await conn.execute(
        """INSERT INTO staff (school_id, person_id, role, display_name) VALUES ($1, $2, $3, $4)
           ON CONFLICT (school_id, person_id, role) DO UPDATE SET display_name = EXCLUDED.display_name""",
        school_id,
        person_id,
        role,
        display_name,
    )


async def remove_staff_role(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID, role: str
) -> bool:
    removed = await conn.fetchval(
        "DELETE FROM staff WHERE school_id = $1 AND person_id = $2 AND role = $3 RETURNING true",
        school_id,
        person_id,
        role,
    )
    return bool(removed)


async def publish_staff(conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID) -> None:
    """Tell other services the person's staff roles at the school now (none: no longer staff), in the
    caller's transaction; posts learns from it who administers the school."""
    roles = await conn.fetchval(
        "SELECT coalesce(array_agg(role ORDER BY role), '{}') FROM staff WHERE school_id = $1 AND person_id = $2",
        school_id,
        person_id,
    )
    revision = await conn.fetchval("SELECT nextval('change_revisions')")
    event = StaffChanged(school_id=school_id, person_id=person_id, roles=roles, revision=revision)
    await publish(conn, event, school_id)


async def admins_left(conn: asyncpg.Connection, school_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM staff WHERE school_id = $1 AND role = 'admin'", school_id
    )
    return count


async def staff_page(
    conn: asyncpg.Connection, school_id: uuid.UUID, limit: int, after: list[Any] | None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT a.person_id, a.email, max(st.display_name) AS display_name,
                  array_agg(st.role ORDER BY st.role) AS roles
           FROM staff st JOIN accounts a USING (person_id)
           WHERE st.school_id = $1
           GROUP BY a.person_id
           HAVING ($3::text IS NULL OR (lower(max(st.display_name)), a.person_id) > ($3, $4::uuid))
           ORDER BY lower(max(st.display_name)), a.person_id LIMIT $2""",
        school_id,
        limit,
        after[0] if after else None,
        after[1] if after else None,
    )
    return rows


async def staff_member(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT a.person_id, a.email, max(st.display_name) AS display_name,
                  array_agg(st.role ORDER BY st.role) AS roles
           FROM staff st JOIN accounts a USING (person_id)
           WHERE st.school_id = $1 AND st.person_id = $2 GROUP BY a.person_id""",
        school_id,
        person_id,
    )


async def is_teacher(conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM staff WHERE school_id = $1 AND person_id = $2 AND role = 'teacher'",
            school_id,
            person_id,
        )
    )


async def assign_teaching(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO teaching (group_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        group_id,
        person_id,
    )


async def end_teaching(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> bool:
    ended = await conn.fetchval(
        "DELETE FROM teaching WHERE group_id = $1 AND person_id = $2 RETURNING true", group_id, person_id
    )
    return bool(ended)


async def lock_school(conn: asyncpg.Connection, school_id: uuid.UUID) -> None:
    """Serialise changes to the school's staff for the rest of the transaction."""
    await conn.execute("SELECT 1 FROM schools WHERE school_id = $1 FOR UPDATE", school_id)


async def end_all_teaching(conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID) -> None:
    await conn.execute(
        """DELETE FROM teaching t USING groups g
           WHERE g.group_id = t.group_id AND g.school_id = $1 AND t.person_id = $2""",
        school_id,
        person_id,
    )
