"""Reminders of pending invitations (issue 5): every ``reminder_days`` days, at most ``max_reminders``
times (school settings), a guardian who has not linked gets a new code with a fresh expiry.

A reminder is a new code, not the old one mailed again: the clear code is not kept anywhere once its
mail has gone, so it cannot be mailed again. The old code stops working, as with a re-send. Linked
guardians, children who left or are not placed, schools that have not launched, and codes an admin
revoked (a withdrawn invitation) get none.
"""

import asyncpg

from identity.invitations import store

# Reminders per run: keeps one run's transaction short; the rest go out on the next runs.
PER_RUN = 500

# The open (unused, unrevoked, possibly expired) code of a pending guardian whose last mail is
# older than the school's interval and who has had fewer reminders than the school allows. Issuing
# revokes the earlier code, so a guardianship has at most one such code.
_DUE = """
    SELECT ac.code_id, ac.guardianship_id, ac.reminders_sent
    FROM access_codes ac
    JOIN guardianships gs USING (guardianship_id)
    JOIN children c USING (child_id)
    JOIN schools s ON s.school_id = gs.school_id
    WHERE ac.used_at IS NULL AND ac.revoked_at IS NULL
      AND gs.person_id IS NULL AND c.left_on IS NULL
      AND s.invitations_launched_at IS NOT NULL
      AND ac.reminders_sent < s.max_reminders
      AND ac.last_sent_at <= now() - s.reminder_days * interval '1 day'
      AND EXISTS (SELECT 1 FROM placements p JOIN school_years y USING (school_year_id)
                  WHERE p.child_id = c.child_id AND y.ends_on >= (now() AT TIME ZONE s.time_zone)::date)
    ORDER BY ac.last_sent_at
    LIMIT $1
    FOR UPDATE OF gs SKIP LOCKED
"""


async def send_due_reminders(conn: asyncpg.Connection) -> int:
    """Issue the next reminder to every guardian due one, in the caller's transaction; returns how
    many went out. The periodic job runs it once across replicas."""
    due = await conn.fetch(_DUE, PER_RUN)
    # Read again now that the guardianships are locked: a re-send may have replaced a code meanwhile.
    still_open = await conn.fetch(
        "SELECT code_id FROM access_codes WHERE code_id = ANY($1) AND used_at IS NULL AND revoked_at IS NULL",
        [r["code_id"] for r in due],
    )
    open_ids = {r["code_id"] for r in still_open}
    issued = await store.issue_many(
        conn, [(r["guardianship_id"], r["reminders_sent"] + 1) for r in due if r["code_id"] in open_ids]
    )
    return len(issued)
