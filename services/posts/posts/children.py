"""Posts' copy of identity's children: the names sign-ups show (the teacher's conference schedule,
the messages about a booking, helper lists). Fed by ChildChanged (newest revision wins) and
ChildErased (GDPR art. 17: the name and the child's bookings go, each with a SlotCancelled naming
nobody so the notifier drops its reminder; the id is remembered as erased so a late ChildChanged
cannot bring the name back).

``keep_children_copy(handlers)`` registers both handlers; ``names`` reads the copy.
"""

import uuid

import asyncpg

from posts.conferences import ended
from shared.consumer import Handlers
from shared.contracts import ChildChanged, ChildErased
from shared.envelope import Envelope


async def upsert_child(conn: asyncpg.Connection, event: ChildChanged) -> None:
    """Keep the child's name unless the copy holds a newer revision or the child was erased."""
    await conn.execute(
        """INSERT INTO children (child_id, school_id, given_name, family_name, revision)
           SELECT $1, $2, $3, $4, $5
           WHERE NOT EXISTS (SELECT 1 FROM erased_children WHERE child_id = $1)
           ON CONFLICT (child_id) DO UPDATE SET school_id = EXCLUDED.school_id,
             given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name, revision = EXCLUDED.revision
           WHERE children.revision < EXCLUDED.revision""",
        event.child_id,
        event.school_id,
        event.given_name,
        event.family_name,
        event.revision,
    )


async def erase_child(conn: asyncpg.Connection, child_id: uuid.UUID) -> None:
    """Forget the child: name, conference bookings and reminders. Nobody is sent a message (the school
    erased the child's data; a message naming the child would be the opposite), but each booking's
    SlotCancelled (without the name or recipients, conferences/ended.py) makes the notifier drop the
    day-before reminder it holds."""
    await conn.execute("INSERT INTO erased_children (child_id) VALUES ($1) ON CONFLICT DO NOTHING", child_id)
    await ended.child_erased(conn, child_id)
    await conn.execute("DELETE FROM children WHERE child_id = $1", child_id)
    await conn.execute("DELETE FROM conference_reminders WHERE child_id = $1", child_id)


async def names(conn: asyncpg.Connection, child_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """(given name, family name) of the children the copy knows; unknown ones are left out."""
    rows = await conn.fetch(
        "SELECT child_id, given_name, family_name FROM children WHERE child_id = ANY($1::uuid[])", child_ids
    )
    return {r["child_id"]: (r["given_name"], r["family_name"]) for r in rows}


def keep_children_copy(handlers: Handlers) -> None:
    """Register the handlers of ChildChanged and ChildErased on posts' Handlers."""

    @handlers.on(ChildChanged)
    async def child_changed(conn: asyncpg.Connection, _env: Envelope, event: ChildChanged) -> None:
        await upsert_child(conn, event)

    @handlers.on(ChildErased)
    async def child_erased(conn: asyncpg.Connection, _env: Envelope, event: ChildErased) -> None:
        await erase_child(conn, event.child_id)
