"""Bookings that end without anyone cancelling them: the child left every group of the schedule (or
the school), or the child was erased. Everything of a child's place in a group ends with it (issue 7:
"everything ... ends with it"; the feed's rule: a child leaving ends access at once), so their
bookings are cancelled in the same transaction as the change in posts' copies, and the slot is free
for another family at once.

Each one publishes ``SlotCancelled`` with ``cancelled_by`` None (the system) so the notifier drops the
day-before reminder; with no ``guardian_ids``, so nobody is sent a message: the family has no access
to the schedule any more (the usual message invites them to choose another time), and for an erased
child a message naming the child is the opposite of the erasure. ``child_name`` is empty: no message
needs it, and identity's erasure first takes the child out of their groups (so the booking may end
here as a child who left, before ChildErased arrives): the notifier is never handed the name.
"""

import uuid

import asyncpg

from posts.conferences import store
from shared.contracts import SlotCancelled
from shared.outbox import publish


async def _cancel(conn: asyncpg.Connection, bookings: list[asyncpg.Record]) -> None:
    for booked in bookings:
        event = SlotCancelled(
            booking_id=booked["booking_id"],
            schedule_id=booked["schedule_id"],
            school_id=booked["school_id"],
            child_id=booked["child_id"],
            child_name="",
            title=booked["title"],
            guardian_ids=[],
            starts_at=booked["starts_at"],
            cancelled_by=None,
        )
        await publish(conn, event, booked["school_id"])
    await store.cancel_all(conn, [b["booking_id"] for b in bookings])


async def membership_changed(conn: asyncpg.Connection, group_id: uuid.UUID) -> None:
    """After a membership of the group changed in posts' copy (revoked, or granted again with fewer
    children): cancel the bookings of the group's schedules whose child no longer belongs to any of
    the schedule's groups. A booking under way finishes first and is found too (the schedules' rows
    are locked); a child still in another of the schedule's groups, or through another guardian,
    keeps their booking."""
    await store.lock_group_schedules(conn, group_id)
    await _cancel(conn, await store.left_behind(conn, group_id))


async def child_erased(conn: asyncpg.Connection, child_id: uuid.UUID) -> None:
    """Cancel every booking of an erased child (the caller forgets the rest of the child)."""
    await _cancel(conn, await store.child_bookings(conn, child_id))
