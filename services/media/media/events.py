"""What media does with other services' events: keep its copy of memberships, and queue the
photos of a published post for processing."""

import logging

import asyncpg

from media import store
from media.processing import NOTIFY_CHANNEL
from shared.consumer import Handlers
from shared.contracts import GroupChanged, PhotoRejected, PostPublished
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy
from shared.outbox import publish

log = logging.getLogger(__name__)
handlers = Handlers()
keep_membership_copy(handlers)


@handlers.on(GroupChanged)
async def group_changed(conn: asyncpg.Connection, _env: Envelope, event: GroupChanged) -> None:
    # Which school a group's photos belong to: storage keys and retention are per school.
    await store.upsert_group(conn, event.group_id, event.school_id, event.revision)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, env: Envelope, event: PostPublished) -> None:
    if not event.photo_ids:
        return
    attached = await store.attach_to_post(
        conn, event.photo_ids, event.author_id, event.post_id, event.group_id, env.correlation_id
    )
    for photo_id in set(event.photo_ids) - set(attached):
        # Someone else's photo, one already in another post, or no photo at all: it stays out of
        # this group, and the post shows it as rejected rather than processing for ever.
        log.warning("photo not attached", extra={"post_id": str(event.post_id), "photo_id": str(photo_id)})
        rejected = PhotoRejected(
            photo_id=photo_id, post_id=event.post_id, reason="not a photo the author uploaded"
        )
        await publish(conn, rejected, env.school_id)
    if attached:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
