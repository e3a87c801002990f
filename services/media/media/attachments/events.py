"""What media does with a post's attachments when posts tells of the post (called from media.events,
which holds the one handler per event type): attach them when it appears, follow edits, and take them out
of sight when they leave the post or the post is deleted (the removal drainer then deletes them)."""

import logging
import uuid

import asyncpg

from media.attachments import store

log = logging.getLogger(__name__)


async def attach(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    uploader_id: uuid.UUID,
    attachment_ids: list[uuid.UUID],
) -> None:
    """The post's attachments, served from now on to its group's members. Posts let only the writer's own
    unused uploads of the group through; one that is not (deleted meanwhile) stays out, logged."""
    if not attachment_ids:
        return
    attached = await store.attach(conn, attachment_ids, uploader_id, post_id, group_id)
    for attachment_id in set(attachment_ids) - set(attached):
        log.warning(
            "attachment not attached", extra={"post_id": str(post_id), "attachment_id": str(attachment_id)}
        )


async def post_edited(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    editor_id: uuid.UUID,
    attachment_ids: list[uuid.UUID],
) -> None:
    """An edit's list is the post's attachments from now on: those left out are removed (deleted from
    storage), new ones are the editor's."""
    await store.remove_from_post(conn, post_id, attachment_ids)
    kept = await store.in_post(conn, post_id)
    await attach(conn, post_id, group_id, editor_id, [a for a in attachment_ids if a not in kept])


async def post_deleted(conn: asyncpg.Connection, post_id: uuid.UUID) -> None:
    """A deleted post's attachments are deleted: out of sight now, out of storage once the drainer ran."""
    await store.remove_from_post(conn, post_id)
