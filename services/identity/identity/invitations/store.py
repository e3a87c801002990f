"""Invitations: issuing access codes by email (through the notifier, by event) and redeeming them."""

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from identity.invitations import codes
from shared.contracts import InvitationIssued
from shared.envelope import Event
from shared.outbox import publish_many


async def issue(conn: asyncpg.Connection, guardianship_id: uuid.UUID, reminder: int = 0) -> uuid.UUID | None:
    """A new code for the guardianship, mailed by the notifier; any earlier open code stops working.

    None when there is nothing to invite (already linked, or the child left). The clear code lives
    only in the event, which the outbox strips once sent.
    """
    issued = await issue_many(conn, [(guardianship_id, reminder)])
    return issued.get(guardianship_id)


async def issue_many(
    conn: asyncpg.Connection, invitations: Sequence[tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, uuid.UUID]:
    """``issue`` for many (guardianship_id, reminder number) pairs in a few round trips (a launch day
    invites a whole school). Returns the new code_id per guardianship invited; those with nothing to
    invite are left out. The guardianships are locked in id order."""
    reminder_of = dict(invitations)
    rows = await conn.fetch(
        """SELECT gs.guardianship_id, gs.email, gs.school_id, s.name AS school_name, s.locale,
                  s.access_code_days, c.given_name, c.child_id,
                  (SELECT a.locale FROM accounts a WHERE lower(a.email) = lower(gs.email)) AS account_locale
           FROM guardianships gs JOIN children c USING (child_id) JOIN schools s ON s.school_id = gs.school_id
           WHERE gs.guardianship_id = ANY($1) AND gs.person_id IS NULL AND c.left_on IS NULL
           ORDER BY gs.guardianship_id
           FOR UPDATE OF gs""",
        list(reminder_of),
    )
    if not rows:
        return {}
    ids = [r["guardianship_id"] for r in rows]
    await conn.execute(
        """UPDATE access_codes SET revoked_at = now()
           WHERE guardianship_id = ANY($1) AND used_at IS NULL AND revoked_at IS NULL""",
        ids,
    )
    now = datetime.now(UTC)
    events: dict[uuid.UUID, list[Event]] = defaultdict(list)
    inserts = []
    for row in rows:
        code, code_id = codes.new_code(), uuid.uuid4()
        expires_at = now + timedelta(days=row["access_code_days"])
        reminder = reminder_of[row["guardianship_id"]]
        inserts.append(
            (code_id, row["guardianship_id"], codes.prefix(code), codes.code_hash(code), expires_at, reminder)
        )
        events[row["school_id"]].append(
            InvitationIssued(
                invitation_id=code_id,
                school_id=row["school_id"],
                email=row["email"],
                locale=row["account_locale"] or row["locale"],
                school_name=row["school_name"],
                child_name=row["given_name"],
                child_id=row["child_id"],
                access_code=code,
                expires_at=expires_at,
                reminder=reminder,
            )
        )
    await conn.executemany(
        """INSERT INTO access_codes (code_id, guardianship_id, prefix, code_hash, expires_at, reminders_sent)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        inserts,
    )
    for school_id, school_events in events.items():
        await publish_many(conn, school_events, school_id)
    return {guardianship_id: code_id for code_id, guardianship_id, *_ in inserts}


# A guardianship whose child is placed in the school's current or a coming year and has not left.
_PLACED = """c.left_on IS NULL
    AND EXISTS (SELECT 1 FROM placements p JOIN school_years y USING (school_year_id)
                WHERE p.child_id = c.child_id AND y.ends_on >= (now() AT TIME ZONE s.time_zone)::date)"""
# A code that still works: neither used nor revoked, and not expired.
OPEN_CODE = "ac.used_at IS NULL AND ac.revoked_at IS NULL AND ac.expires_at > now()"


# An invitation an admin withdrew: the latest code, revoked unused. It stays withdrawn until an
# admin re-sends (a launch or a placement does not undo it; nor do reminders follow it).
_WITHDRAWN = """ac.revoked_at IS NOT NULL AND ac.used_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM access_codes later
                    WHERE later.guardianship_id = ac.guardianship_id AND later.created_at > ac.created_at)"""


async def pending_among(conn: asyncpg.Connection, guardianship_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Those of ``guardianship_ids`` (locked by the caller) that are to be invited: not linked, the
    child placed and not left, the school launched, no open code and no withdrawn invitation (a code
    that expired unused does not stop a new invitation). Read after the locks, so two
    transactions inviting the same guardian cannot both see "no open code"."""
    rows = await conn.fetch(
        f"""SELECT gs.guardianship_id FROM guardianships gs
            JOIN children c USING (child_id) JOIN schools s ON s.school_id = c.school_id
            WHERE gs.guardianship_id = ANY($1) AND gs.person_id IS NULL AND {_PLACED}
              AND s.invitations_launched_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM access_codes ac
                              WHERE ac.guardianship_id = gs.guardianship_id AND ({OPEN_CODE} OR {_WITHDRAWN}))
            ORDER BY gs.guardianship_id""",  # noqa: S608 - constants, no input
        guardianship_ids,
    )
    return [r["guardianship_id"] for r in rows]


async def has_launched(conn: asyncpg.Connection, school_id: uuid.UUID) -> bool:
    """Whether the school has started inviting, read under a share lock on the school row held to the
    end of the caller's transaction: a launch (which updates that row) either committed before, and
    is seen, or waits for the caller's commit, and then sees the caller's guardianships."""
    return bool(
        await conn.fetchval(
            "SELECT invitations_launched_at IS NOT NULL FROM schools WHERE school_id = $1 FOR SHARE",
            school_id,
        )
    )


async def invite_pending_of_child(conn: asyncpg.Connection, child_id: uuid.UUID) -> int:
    """Invite the child's guardians that have no account linked and no open code, if the school has
    started inviting and the child is placed in its current or a coming year (a child placed
    mid-year, or a guardian added later, is invited at once). Returns how many were invited.

    The school row is share-locked first (see ``has_launched``), so that a launch committing
    meanwhile cannot miss these guardians nor be missed by them."""
    school_id = await conn.fetchval("SELECT school_id FROM children WHERE child_id = $1", child_id)
    if school_id is None or not await has_launched(conn, school_id):
        return 0
    locked = await conn.fetch(
        """SELECT guardianship_id FROM guardianships WHERE child_id = $1
           ORDER BY guardianship_id FOR UPDATE""",
        child_id,
    )
    pending = await pending_among(conn, [r["guardianship_id"] for r in locked])
    return len(await issue_many(conn, [(g, 0) for g in pending]))


async def find_code(conn: asyncpg.Connection, code: str) -> asyncpg.Record | None:
    """The code's row with its guardianship, locked for redeeming; None when no such code exists."""
    return await conn.fetchrow(
        """SELECT ac.code_id, ac.expires_at, ac.used_at, ac.revoked_at, gs.guardianship_id, gs.child_id,
                  gs.school_id, gs.email, gs.person_id AS linked_person_id, c.left_on
           FROM access_codes ac JOIN guardianships gs USING (guardianship_id) JOIN children c USING (child_id)
           WHERE ac.code_hash = $1 FOR UPDATE OF ac, gs""",
        codes.code_hash(code),
    )


async def has_newer_code(conn: asyncpg.Connection, code_id: uuid.UUID, guardianship_id: uuid.UUID) -> bool:
    """Whether a later code was issued to the guardianship (the code was replaced, not withdrawn)."""
    return bool(
        await conn.fetchval(
            """SELECT true FROM access_codes
               WHERE guardianship_id = $2 AND code_id <> $1
                 AND created_at >= (SELECT created_at FROM access_codes WHERE code_id = $1)
               LIMIT 1""",
            code_id,
            guardianship_id,
        )
    )


async def use_code(
    conn: asyncpg.Connection, code_id: uuid.UUID, guardianship_id: uuid.UUID, person_id: uuid.UUID
) -> None:
    """Mark the code used and link the guardianship to the account (seed rule 2)."""
    await conn.execute("UPDATE access_codes SET used_at = now() WHERE code_id = $1", code_id)
    await conn.execute(
        "UPDATE guardianships SET person_id = $2, linked_at = now() WHERE guardianship_id = $1",
        guardianship_id,
        person_id,
    )
