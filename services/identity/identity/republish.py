"""Operator command: publish identity's current state again, so that the copies other services keep
(posts, media, the notifier) get what they missed, e.g. rows made before a service had a consumer for
an event type, or before an event carried a field (GroupChanged's school-year dates).

    python -m identity.republish [--school SCHOOL_ID] [--include-revoked]

Publishes, for every school or one: SchoolChanged, StaffChanged (each current staff member),
GroupChanged (every group of every year), ChildChanged (each child not erased), MembershipGranted for
each current membership (``--include-revoked``: MembershipRevoked for ended ones too), and
AccountChanged for the accounts involved (all accounts when no school is named).

Harmless to run at any time, as often as needed: every event carries the revision identity holds
now, and each copy applies an event only when it is newer than what it has (an equal revision changes
nothing; a missing row is added). StaffChanged has no stored revision, so it takes a new one while
the staff table is locked against writes (SHARE), which a concurrent change of roles waits for: the
republished roles cannot overtake a newer change. Events go through the outbox: the running identity
service relays them (DATABASE_URL from the environment, as for the service; no broker needed here).
Each school is one transaction.
"""

import argparse
import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Sequence

import asyncpg

from identity.families.changes import child_changed_events
from shared.contracts import (
    AccountChanged,
    GroupChanged,
    MembershipGranted,
    MembershipRevoked,
    SchoolChanged,
    StaffChanged,
)
from shared.db import create_pool
from shared.envelope import Event
from shared.outbox import publish_many

# Events per outbox INSERT: a school of 400 pupils has some 800 memberships.
CHUNK = 500


async def _publish(
    conn: asyncpg.Connection, events: Sequence[Event], school_id: uuid.UUID | None, counts: Counter[str]
) -> None:
    for start in range(0, len(events), CHUNK):
        await publish_many(conn, events[start : start + CHUNK], school_id)
    for event in events:
        counts[event.type] += 1


async def republish_school(
    conn: asyncpg.Connection, school_id: uuid.UUID, *, include_revoked: bool = False, accounts: bool = True
) -> Counter[str]:
    """Publish one school's current state in the caller's transaction (see the module); counts by
    event type. ``accounts``: also the AccountChanged of its staff, guardians and members."""
    counts: Counter[str] = Counter()
    school = await conn.fetchrow(
        """SELECT school_id, name, time_zone, locale, max_posts_per_day, min_posts_per_week,
                  to_char(digest_time, 'HH24:MI') AS digest_time, photo_retention_days, share_notice,
                  watermark_photos, revision
           FROM schools WHERE school_id = $1""",
        school_id,
    )
    if school is None:
        raise LookupError(f"no school {school_id}")
    await _publish(conn, [SchoolChanged(**dict(school))], school_id, counts)

    # No stored revision for staff roles: new ones, with writers of staff held off until commit.
    await conn.execute("LOCK TABLE staff IN SHARE MODE")
    staff = await conn.fetch(
        """SELECT person_id, array_agg(role ORDER BY role) AS roles, nextval('change_revisions') AS revision
           FROM staff WHERE school_id = $1 GROUP BY person_id ORDER BY person_id""",
        school_id,
    )
    await _publish(conn, [StaffChanged(school_id=school_id, **dict(r)) for r in staff], school_id, counts)

    groups = await conn.fetch(
        """SELECT g.group_id, g.school_id, g.name, y.name AS school_year, y.starts_on AS year_starts_on,
                  y.ends_on AS year_ends_on, g.revision
           FROM groups g JOIN school_years y USING (school_year_id)
           WHERE g.school_id = $1 ORDER BY y.starts_on, g.name""",
        school_id,
    )
    await _publish(conn, [GroupChanged(**dict(r)) for r in groups], school_id, counts)

    children = [event for _, event in await child_changed_events(conn, school_id)]
    await _publish(conn, children, school_id, counts)

    memberships = await conn.fetch(
        """SELECT m.group_id, m.person_id, m.role, m.children, m.revision, m.active
           FROM memberships m JOIN groups g USING (group_id)
           WHERE g.school_id = $1 AND (m.active OR $2) ORDER BY m.group_id, m.person_id""",
        school_id,
        include_revoked,
    )
    events: list[Event] = [
        MembershipGranted(
            group_id=r["group_id"],
            person_id=r["person_id"],
            role=r["role"],
            revision=r["revision"],
            children=r["children"],
        )
        if r["active"]
        else MembershipRevoked(
            group_id=r["group_id"], person_id=r["person_id"], role=r["role"], revision=r["revision"]
        )
        for r in memberships
    ]
    await _publish(conn, events, school_id, counts)

    if accounts:
        rows = await conn.fetch(
            """SELECT person_id, email, display_name, locale, revision FROM accounts
               WHERE person_id IN (SELECT person_id FROM staff WHERE school_id = $1
                                   UNION SELECT person_id FROM guardianships WHERE school_id = $1
                                   UNION SELECT m.person_id FROM memberships m JOIN groups g USING (group_id)
                                         WHERE g.school_id = $1)
               ORDER BY person_id""",
            school_id,
        )
        await _publish(conn, [AccountChanged(**dict(r)) for r in rows], None, counts)
    return counts


async def republish_accounts(conn: asyncpg.Connection) -> Counter[str]:
    """AccountChanged for every account, in the caller's transaction."""
    counts: Counter[str] = Counter()
    rows = await conn.fetch(
        "SELECT person_id, email, display_name, locale, revision FROM accounts ORDER BY person_id"
    )
    await _publish(conn, [AccountChanged(**dict(r)) for r in rows], None, counts)
    return counts


async def republish(
    pool: asyncpg.Pool, school_id: uuid.UUID | None = None, *, include_revoked: bool = False
) -> Counter[str]:
    """Republish one school (with its accounts), or every school and then every account; one
    transaction per school. Counts by event type. LookupError for an unknown ``school_id``."""
    counts: Counter[str] = Counter()
    if school_id is not None:
        async with pool.acquire() as conn, conn.transaction():
            counts += await republish_school(conn, school_id, include_revoked=include_revoked)
        return counts
    async with pool.acquire() as conn:
        school_ids = [
            r["school_id"] for r in await conn.fetch("SELECT school_id FROM schools ORDER BY school_id")
        ]
    for each in school_ids:
        async with pool.acquire() as conn, conn.transaction():
            counts += await republish_school(conn, each, include_revoked=include_revoked, accounts=False)
    async with pool.acquire() as conn, conn.transaction():
        counts += await republish_accounts(conn)
    return counts


async def _run(database_url: str, school_id: uuid.UUID | None, include_revoked: bool) -> Counter[str]:
    pool = await create_pool(database_url, 2)
    try:
        return await republish(pool, school_id, include_revoked=include_revoked)
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m identity.republish",
        description="Publish identity's current schools, staff, groups, children, memberships and accounts "
        "again, so that the other services' copies get what they missed. Harmless to repeat.",
    )
    parser.add_argument("--school", type=uuid.UUID, help="only this school (its id); default: every school")
    parser.add_argument(
        "--include-revoked", action="store_true", help="also MembershipRevoked for memberships that ended"
    )
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        parser.exit(2, "set DATABASE_URL to identity's database, as for the service\n")
    try:
        counts = asyncio.run(_run(database_url, args.school, args.include_revoked))
    except LookupError as exc:
        parser.exit(2, f"{exc}\n")
    print(json.dumps({"published": dict(sorted(counts.items())), "total": sum(counts.values())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
