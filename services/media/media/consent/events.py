"""Media's copy of children's photo consent (ChildChanged) and the erasure of a child's photos
(ChildErased). A change of consent is announced for every photo tagged with the child (PhotoChanged),
so posts refuses them in new posts at once."""

import asyncpg

from media import changes
from media.consent import store
from media.consent.erasure import ERASURE_CHANNEL
from shared.consumer import Handlers
from shared.contracts import ChildChanged, ChildErased
from shared.envelope import Envelope


def keep_consent_copy(handlers: Handlers) -> None:
    """Register the handlers of ChildChanged and ChildErased on media's Handlers."""

    @handlers.on(ChildChanged)
    async def child_changed(conn: asyncpg.Connection, _env: Envelope, event: ChildChanged) -> None:
        if await store.upsert_child(conn, event):
            await changes.announce(conn, await store.photos_of_child(conn, event.child_id))

    @handlers.on(ChildErased)
    async def child_erased(conn: asyncpg.Connection, _env: Envelope, event: ChildErased) -> None:
        # Out of sight and out of every post in this transaction; the erasure drain deletes the objects
        # and rows right after the commit (and keeps trying while storage is unreachable).
        marked = await store.erase_child(conn, event.child_id, event.school_id)
        if marked:
            await changes.announce_removed(conn, marked, changes.ERASED_REMOVED)
            await conn.execute("SELECT pg_notify($1, '')", ERASURE_CHANNEL)
