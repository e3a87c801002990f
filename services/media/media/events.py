"""What media does with other services' events: keep its copy of memberships, and queue the
photos of a published post for processing."""

import logging

import asyncpg

from media import store
from media.processing import NOTIFY_CHANNEL
from shared.consumer import Handlers
from shared.contracts import PostPublished
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy

log = logging.getLogger(__name__)
handlers = Handlers()
keep_membership_copy(handlers)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, env: Envelope, event: PostPublished) -> None:
    if not event.photo_ids:
        return
    attached = await store.attach_to_post(
        conn, event.photo_ids, event.author_id, event.post_id, event.group_id, env.correlation_id
    )
    if len(attached) != len(event.photo_ids):
        # Someone else's photo, or one already in another post: it stays out of this group.
        log.warning(
            "photos not attached",
            extra={"post_id": str(event.post_id), "missing": len(event.photo_ids) - len(attached)},
        )
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
