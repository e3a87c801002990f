"""The weekly minimum's SQL: the groups found quiet near the end of their school's week, the record of
each reminder (once per group and week), and the report's figures. What counts as a post and which
groups take part: see posts.weekly.domain."""

import uuid
from datetime import date, datetime, timedelta

import asyncpg

from posts.publishing.domain import DEFAULT_MAX_POSTS_PER_DAY, DEFAULT_TIME_ZONE

DEFAULT_MIN_POSTS_PER_WEEK = 1

# A group's own posts: what the weekly count and the report count.
_OWN_POSTS = "p.announcement_id IS NULL AND p.deleted_at IS NULL"


async def quiet_groups(
    conn: asyncpg.Connection, at: datetime | None, offset: timedelta, school_id: uuid.UUID | None = None
) -> list[asyncpg.Record]:
    """The groups to remind at ``at`` (default: the database's now): of every school whose local time
    is at least ``offset`` into its ISO week (see domain.check_offset), the groups of its current
    school year with fewer of their own posts that week than the school asks, not yet checked that
    week; with the week's Monday, the count, the minimum and the group's teachers now (membership copy).

    Schools not yet in the copy (no SchoolChanged) are left out: their zone and minimum are not known.
    ``school_id``: that school only (tests, an operator checking one school).
    """
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""WITH due AS (
                SELECT s.school_id, s.min_posts_per_week, l.local_now::date AS today,
                       date_trunc('week', l.local_now)::date AS monday
                FROM schools s
                CROSS JOIN LATERAL (SELECT coalesce($1::timestamptz, now()) AT TIME ZONE s.time_zone AS local_now) l
                WHERE s.min_posts_per_week > 0 AND ($3::uuid IS NULL OR s.school_id = $3)
                  AND l.local_now >= date_trunc('week', l.local_now) + $2::interval)
            SELECT g.group_id, g.school_id, g.name, due.monday AS week_starts_on, due.min_posts_per_week, c.posts,
                   ARRAY(SELECT m.person_id FROM memberships m
                         WHERE m.group_id = g.group_id AND m.active AND m.role = 'teacher'
                         ORDER BY m.person_id) AS teacher_ids
            FROM due
            JOIN groups g ON g.school_id = due.school_id
            CROSS JOIN LATERAL (SELECT count(*)::int AS posts FROM posts p
                                WHERE p.group_id = g.group_id AND {_OWN_POSTS}
                                  AND p.local_day BETWEEN due.monday AND due.monday + 6) c
            WHERE CASE WHEN g.year_starts_on IS NOT NULL AND g.year_ends_on IS NOT NULL
                       THEN due.today BETWEEN g.year_starts_on AND g.year_ends_on
                       ELSE EXISTS (SELECT 1 FROM memberships m WHERE m.group_id = g.group_id AND m.active) END
              AND c.posts < due.min_posts_per_week
              AND NOT EXISTS (SELECT 1 FROM quiet_weeks q
                              WHERE q.group_id = g.group_id AND q.week_starts_on = due.monday)
            ORDER BY g.school_id, g.name, g.group_id""",  # noqa: S608 - a constant, no input
        at,
        offset,
        school_id,
    )
    return rows


async def record_quiet_week(
    conn: asyncpg.Connection, group: asyncpg.Record, event_id: uuid.UUID | None
) -> bool:
    """Record that ``group`` (a quiet_groups row) was found quiet in its week, with the reminder's
    event id (None: no teacher to remind); False when that group-week was recorded already (another
    run got there first), and then nothing may be sent."""
    inserted = await conn.fetchval(
        """INSERT INTO quiet_weeks (group_id, week_starts_on, school_id, posts, min_posts_per_week,
                                    teacher_ids, event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (group_id, week_starts_on) DO NOTHING RETURNING true""",
        group["group_id"],
        group["week_starts_on"],
        group["school_id"],
        group["posts"],
        group["min_posts_per_week"],
        group["teacher_ids"],
        event_id,
    )
    return bool(inserted)


async def school_policy(conn: asyncpg.Connection, school_id: uuid.UUID) -> asyncpg.Record:
    """The school's zone, posts per day and per week, and its local date now (identity's defaults
    until the copy has the school)."""
    row = await conn.fetchrow(
        """SELECT coalesce(s.time_zone, $2) AS time_zone,
                  coalesce(s.max_posts_per_day, $3) AS max_posts_per_day,
                  coalesce(s.min_posts_per_week, $4) AS min_posts_per_week,
                  (now() AT TIME ZONE coalesce(s.time_zone, $2))::date AS today
           FROM (SELECT $1::uuid AS school_id) k LEFT JOIN schools s USING (school_id)""",
        school_id,
        DEFAULT_TIME_ZONE,
        DEFAULT_MAX_POSTS_PER_DAY,
        DEFAULT_MIN_POSTS_PER_WEEK,
    )
    assert row is not None
    return row


async def report_weeks(
    conn: asyncpg.Connection, school_id: uuid.UUID, school_year: str, until: date
) -> list[asyncpg.Record]:
    """Per group of the school's ``school_year`` and per week of that year that began by ``until``
    (a local date): the group's own posts that week, the most on one day (as the posts per day count
    them: sign-up posts left out), and whether it was reminded.
    By group name, group id, week. A group whose year's dates are not in the copy yet is taken to run
    from 1 August to 31 July (identity's default)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""WITH g AS (
                SELECT group_id, name,
                       coalesce(year_starts_on, make_date(split_part(school_year, '-', 1)::int, 8, 1)) AS starts,
                       coalesce(year_ends_on, make_date(split_part(school_year, '-', 2)::int, 7, 31)) AS ends
                FROM groups WHERE school_id = $1 AND school_year = $2),
            weeks AS (
                SELECT g.group_id, g.name, w::date AS monday
                FROM g CROSS JOIN LATERAL generate_series(
                    date_trunc('week', g.starts), date_trunc('week', least(g.ends, $3::date)), interval '1 week') w),
            days AS (
                SELECT p.group_id, p.local_day, count(*)::int AS n,
                       -- what the posts per day count: sign-up posts (conferences, helper lists) do not
                       count(*) FILTER (WHERE p.signup_id IS NULL)::int AS counted
                FROM g JOIN posts p USING (group_id)
                WHERE {_OWN_POSTS} AND p.local_day BETWEEN g.starts - 6 AND g.ends + 6
                GROUP BY p.group_id, p.local_day)
            SELECT w.group_id, w.name, w.monday, coalesce(sum(d.n), 0)::int AS posts,
                   coalesce(max(d.counted), 0)::int AS most_on_one_day,
                   EXISTS (SELECT 1 FROM quiet_weeks q WHERE q.group_id = w.group_id
                             AND q.week_starts_on = w.monday AND q.event_id IS NOT NULL) AS reminded
            FROM weeks w
            LEFT JOIN days d ON d.group_id = w.group_id AND d.local_day BETWEEN w.monday AND w.monday + 6
            GROUP BY w.group_id, w.name, w.monday
            ORDER BY w.name, w.group_id, w.monday""",  # noqa: S608 - a constant, no input
        school_id,
        school_year,
        until,
    )
    return rows
