"""What media does with other services' events: keep its copy of memberships, and queue the
photos of a published post for processing."""

import logging

import asyncpg

from media import store
from media.processing import NOTIFY_CHANNEL
from shared.consumer import Handlers
from shared.contracts import MembershipGranted, MembershipRevoked, PostPublished
from shared.envelope import Envelope

log = logging.getLogger(__name__)
handlers = Handlers()


@handlers.on(MembershipGranted)
async def membership_granted(conn: asyncpg.Connection, _env: Envelope, event: MembershipGranted) -> None:
    await store.grant(conn, event.group_id, event.person_id)


@handlers.on(MembershipRevoked)
async def membership_revoked(conn: asyncpg.Connection, _env: Envelope, event: MembershipRevoked) -> None:
    await store.revoke(conn, event.group_id, event.person_id)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, _env: Envelope, event: PostPublished) -> None:
    if not event.photo_ids:
        return
    attached = await store.attach_to_post(
        conn, event.photo_ids, event.author_id, event.post_id, event.group_id
    )
    if len(attached) != len(event.photo_ids):
        # Someone else's photo, or one already in another post: it stays out of this group.
        log.warning(
            "photos not attached",
            extra={"post_id": str(event.post_id), "missing": len(event.photo_ids) - len(attached)},
        )
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
