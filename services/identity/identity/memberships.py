"""Memberships are derived, never set by hand (seed rules 1 and 3).

A guardian belongs to the groups their children are placed in during the school's current year; a
teacher to the groups they teach in that year. A membership names the children it comes through, so
that other services can count families; a change of them is granted again with a new revision. Whatever changes a placement, guardianship, teaching
assignment, staff role, child's leaving or the current year calls ``derive`` in the same
transaction; it compares what the rules say with what is stored and publishes a MembershipGranted or
MembershipRevoked for each difference, with a new revision (see ``shared.membership_copy``).
"""

import uuid
import zlib
from collections.abc import Sequence

import asyncpg

from shared.contracts import MembershipGranted, MembershipRevoked
from shared.envelope import Event
from shared.outbox import publish_many

# What the rules say, for one school (and optionally some accounts only): per group and account the
# role and the children through whom the account belongs (sorted). A teacher who is also a parent in
# the same group is there as teacher, the stronger role, with their children still counted as
# families. A child who left gives nothing.
_DESIRED = """
    SELECT group_id, person_id,
           CASE WHEN bool_or(role = 'teacher') THEN 'teacher' ELSE 'guardian' END AS role,
           COALESCE(array_agg(DISTINCT child_id ORDER BY child_id) FILTER (WHERE child_id IS NOT NULL),
                    '{}') AS children
    FROM (
        SELECT t.group_id, t.person_id, 'teacher' AS role, NULL::uuid AS child_id
        FROM schools s
        JOIN groups g ON g.school_year_id = s.current_year_id
        JOIN teaching t ON t.group_id = g.group_id
        JOIN staff st ON st.school_id = s.school_id AND st.person_id = t.person_id AND st.role = 'teacher'
        WHERE s.school_id = $1 AND ($2::uuid[] IS NULL OR t.person_id = ANY($2))
        UNION ALL
        SELECT p.group_id, gs.person_id, 'guardian', c.child_id
        FROM schools s
        JOIN placements p ON p.school_year_id = s.current_year_id
        JOIN children c ON c.child_id = p.child_id AND c.left_on IS NULL
        JOIN guardianships gs ON gs.child_id = c.child_id AND gs.person_id IS NOT NULL
        JOIN accounts a ON a.person_id = gs.person_id AND NOT a.disabled
        WHERE s.school_id = $1 AND ($2::uuid[] IS NULL OR gs.person_id = ANY($2))
    ) d
    GROUP BY group_id, person_id
"""


def _lock_key(school_id: uuid.UUID) -> int:
    return zlib.crc32(b"klaspost-derive:" + school_id.bytes)


async def derive(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Bring the school's stored memberships in line with the rules, for ``person_ids`` or everyone,
    and publish an event per change. Runs in the caller's transaction; returns the number of changes.

    Derivations of one school are serialised (a transaction-level advisory lock), so two concurrent
    changes cannot each miss the other's effect: the second one reads the first one's commit.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(school_id))
    persons = list(person_ids) if person_ids is not None else None
    granted = await conn.fetch(
        f"""WITH desired AS ({_DESIRED})
            INSERT INTO memberships (group_id, person_id, role, children, active, revision)
            SELECT group_id, person_id, role, children, true, nextval('membership_revisions') FROM desired
            ON CONFLICT (group_id, person_id) DO UPDATE
              SET active = true, role = EXCLUDED.role, children = EXCLUDED.children,
                  revision = EXCLUDED.revision, changed_at = now()
              WHERE NOT memberships.active OR memberships.role <> EXCLUDED.role
                 OR memberships.children <> EXCLUDED.children
            RETURNING group_id, person_id, role, children, revision""",  # noqa: S608 - a constant, no input
        school_id,
        persons,
    )
    revoked = await conn.fetch(
        f"""WITH desired AS ({_DESIRED})
            UPDATE memberships m SET active = false, revision = nextval('membership_revisions'),
                   children = '{{}}', changed_at = now()
            FROM groups g
            WHERE g.group_id = m.group_id AND g.school_id = $1 AND m.active
              AND ($2::uuid[] IS NULL OR m.person_id = ANY($2))
              AND NOT EXISTS (SELECT 1 FROM desired d WHERE d.group_id = m.group_id AND d.person_id = m.person_id)
            RETURNING m.group_id, m.person_id, m.role, m.revision""",  # noqa: S608 - a constant, no input
        school_id,
        persons,
    )
    events: list[Event] = [MembershipGranted(**dict(r)) for r in granted]
    events += [MembershipRevoked(**dict(r)) for r in revoked]
    await publish_many(conn, events, school_id)
    return len(events)


async def schools_of_account(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[uuid.UUID]:
    """Every school where the account has a role or a membership: where a change to it may matter."""
    rows = await conn.fetch(
        """SELECT school_id FROM staff WHERE person_id = $1
           UNION SELECT school_id FROM guardianships WHERE person_id = $1
           UNION SELECT g.school_id FROM memberships m JOIN groups g USING (group_id)
                 WHERE m.person_id = $1 AND m.active""",
        person_id,
    )
    return [r["school_id"] for r in rows]


async def derive_for_account(conn: asyncpg.Connection, person_id: uuid.UUID) -> int:
    """Re-derive one account's memberships at every school it has to do with (e.g. when disabled)."""
    changes = 0
    for school_id in sorted(await schools_of_account(conn, person_id)):
        changes += await derive(conn, school_id, [person_id])
    return changes
