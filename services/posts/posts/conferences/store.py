"""Conferences' SQL: schedules and their slots, bookings under the database's unique constraints,
who may see and book what (from posts' membership, staff and school copies), calendar feeds and
the not-booked reminders."""

import hashlib
import uuid
from datetime import datetime

import asyncpg

from posts.publishing.domain import DEFAULT_TIME_ZONE

# The children a schedule is for: children of its groups through active guardian memberships
# ($1 the schedule), limited to its child_ids when it names them; per child its group and guardians.
_SCHEDULE_CHILDREN = """
    SELECT c AS child_id, (array_agg(m.group_id ORDER BY m.group_id))[1] AS group_id,
           array_agg(DISTINCT m.person_id) AS guardian_ids
    FROM conference_schedules s
    JOIN conference_groups cg ON cg.schedule_id = s.schedule_id
    JOIN memberships m ON m.group_id = cg.group_id AND m.active AND m.role = 'guardian'
    CROSS JOIN unnest(m.children) c
    WHERE s.schedule_id = $1 AND (s.child_ids IS NULL OR c = ANY(s.child_ids))"""

_BOOKING = """
    SELECT b.booking_id, b.schedule_id, b.slot_id, b.child_id, b.group_id, b.booked_by, b.booked_at,
           b.moved_at, sl.starts_at, sl.ends_at, s.title, s.location, s.school_id, s.change_deadline,
           COALESCE(sc.time_zone, '{tz}') AS time_zone,
           COALESCE(ch.given_name, '') AS given_name, COALESCE(ch.family_name, '') AS family_name,
           ARRAY(SELECT m.person_id FROM memberships m
                 WHERE m.group_id = b.group_id AND m.active AND m.role = 'guardian' AND b.child_id = ANY(m.children)
                 ORDER BY m.person_id) AS guardian_ids
    FROM conference_bookings b
    JOIN conference_slots sl ON sl.slot_id = b.slot_id
    JOIN conference_schedules s ON s.schedule_id = b.schedule_id
    LEFT JOIN schools sc ON sc.school_id = s.school_id
    LEFT JOIN children ch ON ch.child_id = b.child_id""".replace("{tz}", DEFAULT_TIME_ZONE)


# The bookings a person ($1) sees in their calendar: their children's as a guardian, their groups' as a teacher.
_PERSON_BOOKINGS = f"""{_BOOKING}
    WHERE EXISTS (SELECT 1 FROM memberships m
                  WHERE m.person_id = $1 AND m.active
                    AND ((m.role = 'guardian' AND b.child_id = ANY(m.children))
                         OR (m.role = 'teacher' AND m.group_id = b.group_id)))
    ORDER BY sl.starts_at, b.booking_id"""  # noqa: S608 - constants, no input

# The conditional insert, and the new booking read back as _BOOKING reads one.
_BOOK = f"""WITH added AS (
        INSERT INTO conference_bookings (booking_id, schedule_id, slot_id, child_id, group_id, booked_by)
        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5)
        ON CONFLICT DO NOTHING RETURNING *)
    {_BOOKING.replace("FROM conference_bookings b", "FROM added b")}"""  # noqa: S608 - constants, no input


async def creator_groups(
    conn: asyncpg.Connection, group_ids: list[uuid.UUID], person_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The groups among ``group_ids`` with the person's role in each (or NULL), whether they
    administer its school, and the school's time zone."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT g.group_id, g.school_id, g.school_year, g.name,
                  (SELECT m.role FROM memberships m
                   WHERE m.group_id = g.group_id AND m.person_id = $2 AND m.active) AS role,
                  EXISTS (SELECT 1 FROM staff st WHERE st.school_id = g.school_id AND st.person_id = $2
                                                   AND 'admin' = ANY(st.roles)) AS admin,
                  COALESCE(s.time_zone, $3) AS time_zone
           FROM groups g LEFT JOIN schools s ON s.school_id = g.school_id
           WHERE g.group_id = ANY($1::uuid[])""",
        group_ids,
        person_id,
        DEFAULT_TIME_ZONE,
    )
    return rows


async def insert_schedule(
    conn: asyncpg.Connection,
    schedule_id: uuid.UUID,
    school_id: uuid.UUID,
    school_year: str,
    fields: dict[str, object],
    group_ids: list[uuid.UUID],
    slots: list[tuple[datetime, datetime]],
    created_by: uuid.UUID,
) -> None:
    """The schedule, its groups and its slots, in the caller's transaction."""
    await conn.execute(
        """INSERT INTO conference_schedules (schedule_id, school_id, school_year, title, location, slot_minutes,
             break_minutes, opens_at, early_opens_at, closes_at, change_deadline, child_ids, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
        schedule_id,
        school_id,
        school_year,
        fields["title"],
        fields["location"],
        fields["slot_minutes"],
        fields["break_minutes"],
        fields["opens_at"],
        fields["early_opens_at"],
        fields["closes_at"],
        fields["change_deadline"],
        fields["child_ids"],
        created_by,
    )
    await conn.execute(
        "INSERT INTO conference_groups (schedule_id, group_id) SELECT $1, unnest($2::uuid[])",
        schedule_id,
        group_ids,
    )
    await conn.execute(
        """INSERT INTO conference_slots (slot_id, schedule_id, starts_at, ends_at)
           SELECT gen_random_uuid(), $1, s, e FROM unnest($2::timestamptz[], $3::timestamptz[]) AS t(s, e)""",
        schedule_id,
        [s for s, _ in slots],
        [e for _, e in slots],
    )


async def access(
    conn: asyncpg.Connection,
    schedule_id: uuid.UUID,
    person_id: uuid.UUID,
    child_id: uuid.UUID | None = None,
    slot_id: uuid.UUID | None = None,
    *,
    lock: bool = False,
) -> asyncpg.Record | None:
    """The schedule with what the person may do there: ``staff`` (a teacher of one of its groups or an
    admin of its school), ``children`` (their own children it is for), ``several_children`` (the early
    window applies), the school's time zone and the database's now; for a booking also the group of
    ``child_id`` if the schedule is for that child (``child_group``) and the start of ``slot_id`` if it
    is one of its slots (``slot_starts_at``), all in one round trip. None when there is no such schedule.
    ``lock`` holds the schedule's row FOR KEY SHARE (a booking): a withdrawal (``lock_schedule``) waits
    for the booking and then cancels it too, or the booking waits and finds no schedule."""
    query = """SELECT s.*, COALESCE(sc.time_zone, $3) AS time_zone, now() AS now,
                  ARRAY(SELECT group_id FROM conference_groups WHERE schedule_id = s.schedule_id
                        ORDER BY group_id) AS group_ids,
                  (EXISTS (SELECT 1 FROM conference_groups cg
                           JOIN memberships m ON m.group_id = cg.group_id AND m.person_id = $2 AND m.active
                                              AND m.role = 'teacher'
                           WHERE cg.schedule_id = s.schedule_id)
                   OR EXISTS (SELECT 1 FROM staff st WHERE st.school_id = s.school_id AND st.person_id = $2
                                                       AND 'admin' = ANY(st.roles))) AS staff,
                  ARRAY(SELECT DISTINCT c FROM conference_groups cg
                        JOIN memberships m ON m.group_id = cg.group_id AND m.person_id = $2 AND m.active
                                           AND m.role = 'guardian'
                        CROSS JOIN unnest(m.children) c
                        WHERE cg.schedule_id = s.schedule_id
                          AND (s.child_ids IS NULL OR c = ANY(s.child_ids))) AS children,
                  (SELECT count(DISTINCT c) FROM memberships m JOIN groups g ON g.group_id = m.group_id
                   CROSS JOIN unnest(m.children) c
                   WHERE m.person_id = $2 AND m.active AND m.role = 'guardian'
                     AND g.school_id = s.school_id) >= 2 AS several_children,
                  (SELECT m.group_id FROM conference_groups cg
                   JOIN memberships m ON m.group_id = cg.group_id AND m.active AND m.role = 'guardian'
                   WHERE cg.schedule_id = s.schedule_id AND $4::uuid = ANY(m.children)
                     AND (s.child_ids IS NULL OR $4::uuid = ANY(s.child_ids))
                   ORDER BY m.group_id LIMIT 1) AS child_group,
                  (SELECT sl.starts_at FROM conference_slots sl
                   WHERE sl.slot_id = $5 AND sl.schedule_id = s.schedule_id) AS slot_starts_at
           FROM conference_schedules s LEFT JOIN schools sc ON sc.school_id = s.school_id
           WHERE s.schedule_id = $1"""
    if lock:
        query += " FOR KEY SHARE OF s"
    return await conn.fetchrow(query, schedule_id, person_id, DEFAULT_TIME_ZONE, child_id, slot_id)


async def schedule_children(
    conn: asyncpg.Connection, schedule_id: uuid.UUID, child_id: uuid.UUID | None = None
) -> list[asyncpg.Record]:
    """The children the schedule is for (or just ``child_id``), each with its group and guardians."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _SCHEDULE_CHILDREN + " AND ($2::uuid IS NULL OR c = $2) GROUP BY c ORDER BY c", schedule_id, child_id
    )
    return rows


async def slots(conn: asyncpg.Connection, schedule_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every slot in order, with its booking's fields (NULL when free) and the child's name."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT sl.slot_id, sl.starts_at, sl.ends_at, b.booking_id, b.child_id, b.group_id, b.booked_by,
                  b.booked_at, b.moved_at,
                  COALESCE(ch.given_name, '') AS given_name, COALESCE(ch.family_name, '') AS family_name
           FROM conference_slots sl
           LEFT JOIN conference_bookings b ON b.slot_id = sl.slot_id
           LEFT JOIN children ch ON ch.child_id = b.child_id
           WHERE sl.schedule_id = $1
           ORDER BY sl.starts_at""",
        schedule_id,
    )
    return rows


async def slot(conn: asyncpg.Connection, schedule_id: uuid.UUID, slot_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT slot_id, starts_at, ends_at FROM conference_slots WHERE schedule_id = $1 AND slot_id = $2",
        schedule_id,
        slot_id,
    )


async def book(
    conn: asyncpg.Connection,
    schedule_id: uuid.UUID,
    slot_id: uuid.UUID,
    child_id: uuid.UUID,
    group_id: uuid.UUID,
    booked_by: uuid.UUID,
) -> asyncpg.Record | None:
    """Book the slot for the child unless the slot or the child's place in the schedule is taken
    (the two unique constraints decide, also between concurrent bookings): the booking as ``booking``
    reads it, in the same statement, or None."""
    return await conn.fetchrow(_BOOK, schedule_id, slot_id, child_id, group_id, booked_by)


async def booking_of_child(
    conn: asyncpg.Connection, schedule_id: uuid.UUID, child_id: uuid.UUID
) -> uuid.UUID | None:
    found: uuid.UUID | None = await conn.fetchval(
        "SELECT booking_id FROM conference_bookings WHERE schedule_id = $1 AND child_id = $2",
        schedule_id,
        child_id,
    )
    return found


async def booking(
    conn: asyncpg.Connection, booking_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """A booking with its slot's times, its schedule's title, location, school and deadline, the
    school's time zone and the child's name; ``lock`` holds the booking for a move or cancel.

    The lock is taken on the booking alone, then the booking read in a later statement: ``FOR UPDATE``
    on the join would drop a booking that a concurrent move gave another slot (PostgreSQL rechecks
    the join with the old slot's row), so the second of two moves, or a cancel after a move, would
    get 404 for a booking that exists."""
    if lock:
        found = await conn.fetchval(
            "SELECT booking_id FROM conference_bookings WHERE booking_id = $1 FOR UPDATE", booking_id
        )
        if found is None:
            return None
    return await conn.fetchrow(_BOOKING + " WHERE b.booking_id = $1", booking_id)


async def move(conn: asyncpg.Connection, booking_id: uuid.UUID, slot_id: uuid.UUID) -> bool:
    """Move the booking to the slot unless another booking holds it (the unique constraint decides,
    in a savepoint so the caller's transaction goes on); whether it moved."""
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE conference_bookings SET slot_id = $2, moved_at = now() WHERE booking_id = $1",
                booking_id,
                slot_id,
            )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def schedule_bookings(conn: asyncpg.Connection, schedule_id: uuid.UUID) -> list[asyncpg.Record]:
    """The schedule's bookings as ``booking`` reads them, locked (the schedule is being withdrawn):
    locked first, then read, so that one moved meanwhile is read with its new slot (see ``booking``)."""
    await conn.execute("SELECT 1 FROM conference_bookings WHERE schedule_id = $1 FOR UPDATE", schedule_id)
    rows: list[asyncpg.Record] = await conn.fetch(
        _BOOKING + " WHERE b.schedule_id = $1 ORDER BY sl.starts_at", schedule_id
    )
    return rows


async def lock_schedule(conn: asyncpg.Connection, schedule_id: uuid.UUID) -> None:
    """Hold the schedule's row FOR UPDATE (its withdrawal): bookings under way (``access`` with
    ``lock``) finish first and are read with the rest; later ones wait and find no schedule."""
    await conn.execute("SELECT 1 FROM conference_schedules WHERE schedule_id = $1 FOR UPDATE", schedule_id)


async def delete_schedule(conn: asyncpg.Connection, schedule_id: uuid.UUID) -> None:
    """The schedule with its groups, slots, bookings and reminders (ON DELETE CASCADE)."""
    await conn.execute("DELETE FROM conference_schedules WHERE schedule_id = $1", schedule_id)


async def cancel(conn: asyncpg.Connection, booking_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM conference_bookings WHERE booking_id = $1", booking_id)


async def my_schedules(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    """(schedule, child, group) for each of the person's children and each schedule it is for."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT DISTINCT ON (s.schedule_id, c) s.schedule_id, c AS child_id, m.group_id
           FROM memberships m
           CROSS JOIN unnest(m.children) c
           JOIN conference_groups cg ON cg.group_id = m.group_id
           JOIN conference_schedules s ON s.schedule_id = cg.schedule_id
           WHERE m.person_id = $1 AND m.active AND m.role = 'guardian'
             AND (s.child_ids IS NULL OR c = ANY(s.child_ids))
           ORDER BY s.schedule_id, c, m.group_id""",
        person_id,
    )
    return rows


async def person_bookings(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    """The bookings a person's calendar holds: their own children's (as a guardian now) and those of
    the groups they teach now, in order."""
    rows: list[asyncpg.Record] = await conn.fetch(_PERSON_BOOKINGS, person_id)
    return rows


def token_hash(token: str) -> bytes:
    """What is stored of a calendar feed's token: its SHA-256 (the token has 256 random bits, so no
    slow hash is needed to keep it from being guessed back)."""
    return hashlib.sha256(token.encode()).digest()


async def add_feed(
    conn: asyncpg.Connection, feed_id: uuid.UUID, person_id: uuid.UUID, token: str
) -> datetime:
    created: datetime = await conn.fetchval(
        "INSERT INTO calendar_feeds (feed_id, person_id, token_hash) VALUES ($1, $2, $3) RETURNING created_at",
        feed_id,
        person_id,
        token_hash(token),
    )
    return created


async def feeds(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT feed_id, created_at FROM calendar_feeds WHERE person_id = $1 ORDER BY created_at", person_id
    )
    return rows


async def revoke_feed(conn: asyncpg.Connection, feed_id: uuid.UUID, person_id: uuid.UUID) -> bool:
    done = await conn.fetchval(
        "DELETE FROM calendar_feeds WHERE feed_id = $1 AND person_id = $2 RETURNING true", feed_id, person_id
    )
    return bool(done)


async def feed_owner(conn: asyncpg.Connection, token: str) -> uuid.UUID | None:
    person: uuid.UUID | None = await conn.fetchval(
        "SELECT person_id FROM calendar_feeds WHERE token_hash = $1", token_hash(token)
    )
    return person


async def closing_soon(conn: asyncpg.Connection, before_close: float) -> list[asyncpg.Record]:
    """Schedules whose window closes within ``before_close`` seconds and is still open."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT schedule_id, school_id, title, closes_at FROM conference_schedules
           WHERE closes_at > now() AND closes_at - make_interval(secs => $1) <= now()""",
        before_close,
    )
    return rows


async def not_booked_unreminded(conn: asyncpg.Connection, schedule_id: uuid.UUID) -> list[asyncpg.Record]:
    """Children of the schedule without a booking and not yet reminded, marked reminded now (so each
    is reminded once, whichever replica runs the job), with their group, guardians and name."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""WITH due AS (
                {_SCHEDULE_CHILDREN}
                  AND NOT EXISTS (SELECT 1 FROM conference_bookings b WHERE b.schedule_id = $1 AND b.child_id = c)
                GROUP BY c),
            marked AS (
                INSERT INTO conference_reminders (schedule_id, child_id)
                SELECT $1, child_id FROM due ON CONFLICT DO NOTHING RETURNING child_id)
            SELECT d.child_id, d.group_id, d.guardian_ids, COALESCE(ch.given_name, '') AS given_name
            FROM due d JOIN marked USING (child_id) LEFT JOIN children ch ON ch.child_id = d.child_id
            ORDER BY d.child_id""",  # noqa: S608 - constants, no input
        schedule_id,
    )
    return rows


async def lock_group_schedules(conn: asyncpg.Connection, group_id: uuid.UUID) -> None:
    """Hold the rows of the group's schedules FOR UPDATE (a membership of the group changed): bookings
    under way (``access`` with ``lock``) finish first, so ``left_behind`` reads them with the rest."""
    await conn.execute(
        """SELECT 1 FROM conference_schedules s JOIN conference_groups cg ON cg.schedule_id = s.schedule_id
           WHERE cg.group_id = $1 ORDER BY s.schedule_id FOR UPDATE OF s""",
        group_id,
    )


async def left_behind(conn: asyncpg.Connection, group_id: uuid.UUID) -> list[asyncpg.Record]:
    """The bookings, as ``booking`` reads them and locked, of the group's schedules whose conference
    has not begun and whose child no longer belongs to any of the schedule's groups (no active
    guardian membership through the child: the child left the group or the school). Past conferences
    are kept: nothing is pending for them and their slot is no use to anyone."""
    found = await conn.fetch(
        """SELECT b.booking_id FROM conference_bookings b
           JOIN conference_groups cg ON cg.schedule_id = b.schedule_id AND cg.group_id = $1
           JOIN conference_slots sl ON sl.slot_id = b.slot_id
           WHERE sl.starts_at > now()
             AND NOT EXISTS (SELECT 1 FROM conference_groups cg2
                             JOIN memberships m ON m.group_id = cg2.group_id AND m.active
                                                AND m.role = 'guardian' AND b.child_id = ANY(m.children)
                             WHERE cg2.schedule_id = b.schedule_id)
           ORDER BY b.booking_id
           FOR UPDATE OF b""",
        group_id,
    )
    if not found:
        return []
    rows: list[asyncpg.Record] = await conn.fetch(
        _BOOKING + " WHERE b.booking_id = ANY($1::uuid[]) ORDER BY sl.starts_at",
        [r["booking_id"] for r in found],
    )
    return rows


async def child_bookings(conn: asyncpg.Connection, child_id: uuid.UUID) -> list[asyncpg.Record]:
    """Every booking of the child, as ``booking`` reads them, locked first (see ``booking``)."""
    await conn.execute("SELECT 1 FROM conference_bookings WHERE child_id = $1 FOR UPDATE", child_id)
    rows: list[asyncpg.Record] = await conn.fetch(
        _BOOKING + " WHERE b.child_id = $1 ORDER BY sl.starts_at", child_id
    )
    return rows


async def cancel_all(conn: asyncpg.Connection, booking_ids: list[uuid.UUID]) -> None:
    await conn.execute("DELETE FROM conference_bookings WHERE booking_id = ANY($1::uuid[])", booking_ids)
