"""Deleting attachments from storage: those no post names any more (their posts deleted or edited),
promptly, by a drainer woken when they are; and uploads no post used within a day, by the photo
clean-up's job (one a send-later post names is 'reserved', not unused).
Storage first, then the row: the rows are deleted in a transaction that commits only after their objects
are gone, so a storage failure leaves them for the next round."""

import logging

import asyncpg

from media.attachments import store
from media.settings import Settings
from media.storage import PhotoStorage
from shared.contracts import AttachmentRemoved
from shared.outbox import publish

log = logging.getLogger(__name__)

BATCH = 100


async def delete_removed(conn: asyncpg.Connection, storage: PhotoStorage) -> int:
    """One batch of removed attachments, in the caller's transaction (StorageUnavailable propagates and
    rolls it back); how many."""
    rows = await store.take_removed(conn, BATCH)
    for row in rows:
        await storage.delete_attachment(row["key"])
    if rows:
        log.info("attachments deleted from storage", extra={"removed": len(rows)})
    return len(rows)


async def delete_unused(conn: asyncpg.Connection, storage: PhotoStorage, settings: Settings) -> int:
    """One batch of uploads no post used within attachment_unused_ttl_seconds, as delete_removed, each
    with an AttachmentRemoved so that posts' copy lets no post name it; also forgets refusals older than
    the hour they count in."""
    rows = await store.take_unused(conn, settings.attachment_unused_ttl_seconds, BATCH)
    for row in rows:
        await storage.delete_attachment(row["key"])
        await publish(conn, AttachmentRemoved(attachment_id=row["attachment_id"]), row["school_id"])
    await store.forget_refusals(conn)
    if rows:
        log.info("unused attachments deleted from storage", extra={"unused": len(rows)})
    return len(rows)
