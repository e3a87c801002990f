"""A child's erasure (GDPR art. 17, identity's ChildErased): the notifier forgets the child.

What it kept of a child: the child's id in the guardians' memberships copy (``memberships.children``,
the families counted for early conference booking), and the child's name in the context of the
conference notices about them (slot booked, moved, cancelled, the day-before reminder, the booking
reminder). Those notices are found by the child's id in their context (or, for the booking reminder,
in its dedupe key); what of them is not sent yet (pending, or held until the day before) is
cancelled, and the name is blanked in every one of them, sent ones too.
"""

import uuid

import asyncpg

# The notices whose context names a child (events.py).
CHILD_KINDS = ("slot_booked", "slot_moved", "slot_cancelled", "day_before", "booking_reminder")
CANCELLED = "cancelled: the child's data was erased"


async def forget_child(conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID) -> tuple[int, int]:
    """Cancel what is not sent yet of the notices about the child, drop the child's name from all
    of them and the child from the memberships copy. (deliveries cancelled, notices blanked)."""
    about = await conn.fetch(
        """SELECT notification_id FROM notifications
           WHERE school_id = $2 AND kind = ANY($3::text[])
             AND (context->>'child_id' = $1 OR dedupe_key LIKE 'booking_reminder:%:' || $1)""",
        str(child_id),
        school_id,
        list(CHILD_KINDS),
    )
    ids = [row["notification_id"] for row in about]
    cancelled = "UPDATE 0"
    if ids:
        cancelled = await conn.execute(
            """UPDATE deliveries SET status = 'failed', last_error = $2
               WHERE notification_id = ANY($1::uuid[]) AND status IN ('pending', 'held')""",
            ids,
            CANCELLED,
        )
        # The name goes (blank, so a digest that already took one of these still renders); the rest
        # (times, title) stays for the delivery history.
        await conn.execute(
            """UPDATE notifications SET context = context || '{"child_name": ""}'::jsonb
               WHERE notification_id = ANY($1::uuid[])""",
            ids,
        )
    await conn.execute(
        "UPDATE memberships SET children = array_remove(children, $1) WHERE $1 = ANY(children)", child_id
    )
    return int(cancelled.split()[-1]), len(ids)
