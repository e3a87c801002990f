"""A child's erasure (GDPR art. 17, identity's ChildErased): the notifier forgets the child.

What it kept of a child: the child's id in the guardians' memberships copy (``memberships.children``,
the families counted for early conference booking), the child's name in the context of the
conference notices about them (slot booked, moved, cancelled, the day-before reminder, the booking
reminder) and in the digests' copies of those notices, and the child's given name in the
invitation mails and their reminders (``mails``) to the child's guardians. Notices are found by the child's id in their context (or, for the booking
reminder, in its dedupe key), mails by the child's id in theirs (InvitationIssued.child_id). What of
them is not sent yet (pending, or held until the day before) is cancelled (a mail's access code
goes with it), and the name is blanked in every one of them, sent ones too. A message a sender holds
at this very moment may still go out.

An invitation published before InvitationIssued carried ``child_id`` names its child without saying
which: such a mail not sent yet is sent as it is (it is a guardian's way in; these were published
before the upgrade, so they go within seconds, or within DELIVERY_EMAIL_RETRY_HOURS while the relay is
down). Once sent or given up on nothing reads its context, so on any ChildErased of its school the
name in it is blanked: a name forgotten too many rather than the erased one kept.

After the erasure: the erasure is recorded (``erased_children``, migration 009: the id, school and
when; no name), and an event naming the child that is handled later (handled at the same time in
another batch, retried after a failure, or published by posts before it dropped the child's
bookings) makes nothing that names the child: events.py asks ``is_erased`` before it queues an
invitation mail (none is queued; a failed row without code or name says so) or a notice (none is
made: posts ends the child's bookings and sign-ups with the erasure, so there is nothing left to
confirm or remind of), and a membership granted again through the child does not bring the child's
id back. The check and the erasure take turns on one advisory lock per child, held to the end of
their transactions: the erasure exclusively, the checks shared (they do not wait for each other).
So a check either runs after the erasure committed and sees its record (READ COMMITTED: each
statement sees what committed before it began), or the erasure waits until the check's transaction
committed and then finds, cancels and blanks what it made. Two batches that hold one child's check
and wait for another's erasure in opposite order deadlock; PostgreSQL ends one of them and the
consumer handles its event again after the retry delay.
"""

import uuid
from dataclasses import dataclass

import asyncpg

# The notices whose context names a child (events.py).
CHILD_KINDS = ("slot_booked", "slot_moved", "slot_cancelled", "day_before", "booking_reminder")
# The mails whose context names a child.
CHILD_MAIL_KINDS = ("invitation", "invitation_reminder")
CANCELLED = "cancelled: the child's data was erased"
# The advisory lock of a child's erasure and the checks against it (the second key of
# hashtextextended keeps it apart from the notifier's other advisory locks on a uuid).
_LOCK = "SELECT {}(hashtextextended('child-erasure:' || $1::uuid::text, 0))"


@dataclass(frozen=True)
class Forgotten:
    deliveries_cancelled: int
    notices_blanked: int
    mails_cancelled: int
    mails_blanked: int


async def forget_child(conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID) -> Forgotten:
    """Record the erasure, cancel what is not sent yet of the notices and mails about the child, drop
    the child's name from all of them and the child from the memberships copy."""
    await conn.execute(_LOCK.format("pg_advisory_xact_lock"), child_id)
    await conn.execute(
        """INSERT INTO erased_children (child_id, school_id) VALUES ($1, $2)
           ON CONFLICT (child_id) DO NOTHING""",
        child_id,
        school_id,
    )
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
    await _forget_in_digests(conn, child_id, school_id)
    mails = await _forget_in_mails(conn, child_id, school_id)
    await conn.execute(
        "UPDATE memberships SET children = array_remove(children, $1) WHERE $1 = ANY(children)", child_id
    )
    return Forgotten(int(cancelled.split()[-1]), len(ids), *mails)


async def _forget_in_digests(conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID) -> None:
    """A digest carries a copy of each notice's context (schedule.make_digests) and is written from
    that copy: the child's name leaves the copies of the notices about the child too."""
    await conn.execute(
        """UPDATE notifications n
           SET context = jsonb_set(n.context, '{items}', (
               SELECT jsonb_agg(CASE WHEN item->'context'->>'child_id' = $1
                                     THEN jsonb_set(item, '{context,child_name}', '""') ELSE item END
                                ORDER BY position)
               FROM jsonb_array_elements(n.context->'items') WITH ORDINALITY AS items(item, position)))
           WHERE n.school_id = $2 AND n.kind = 'digest'
             AND n.context->'items' @> jsonb_build_array(
                   jsonb_build_object('context', jsonb_build_object('child_id', $1::text)))""",
        str(child_id),
        school_id,
    )


async def _forget_in_mails(
    conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID
) -> tuple[int, int]:
    """(mails cancelled, mails blanked): the child's unsent invitation mails fail without their code;
    the child's name leaves every one of them, and every sent one of the school that names no child's
    id (module docstring)."""
    cancelled = await conn.execute(
        """UPDATE mails SET status = 'failed', last_error = $4, secret = NULL
           WHERE context->>'child_id' = $1 AND school_id = $2 AND kind = ANY($3::text[]) AND status = 'pending'""",
        str(child_id),
        school_id,
        list(CHILD_MAIL_KINDS),
        CANCELLED,
    )
    blanked = await conn.execute(
        """UPDATE mails SET context = context || '{"child_name": ""}'::jsonb
           WHERE school_id = $2 AND kind = ANY($3::text[])
             AND (context->>'child_id' = $1
                  OR (NOT context ? 'child_id' AND status <> 'pending' AND context->>'child_name' <> ''))""",
        str(child_id),
        school_id,
        list(CHILD_MAIL_KINDS),
    )
    return int(cancelled.split()[-1]), int(blanked.split()[-1])


async def is_erased(conn: asyncpg.Connection, child_id: uuid.UUID) -> bool:
    """Whether the child was erased. Takes the child's lock shared until the transaction ends, so an
    erasure handled at the same time waits and then finds what this transaction made (module
    docstring): call it before making anything that names the child, in the same transaction."""
    await conn.execute(_LOCK.format("pg_advisory_xact_lock_shared"), child_id)
    return bool(await conn.fetchval("SELECT true FROM erased_children WHERE child_id = $1", child_id))


async def refuse_mail(conn: asyncpg.Connection, mail_id: uuid.UUID) -> None:
    """A mail about an erased child, recorded without code or name (failed): says why."""
    await conn.execute(
        "UPDATE mails SET last_error = $2 WHERE mail_id = $1 AND status = 'failed'", mail_id, CANCELLED
    )


async def drop_erased_children(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> None:
    """A membership granted through a child erased before (events out of order) keeps the
    membership but not the child's id."""
    children: list[uuid.UUID] = (
        await conn.fetchval(
            "SELECT children FROM memberships WHERE group_id = $1 AND person_id = $2", group_id, person_id
        )
        or []
    )
    erased = [child for child in children if await is_erased(conn, child)]
    if erased:
        await conn.execute(
            """UPDATE memberships SET children = ARRAY(SELECT unnest(children) EXCEPT SELECT unnest($3::uuid[]))
               WHERE group_id = $1 AND person_id = $2""",
            group_id,
            person_id,
            erased,
        )
