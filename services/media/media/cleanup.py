"""What media deletes, so that a photo's original with all its metadata does not stay in storage: originals
of photos that are ready or rejected (never served; the variants are what parents see), uploads that no
post used within a day (row, variants and original: they are processed on upload; photos a send-later post
reserves are in a post, see media.reservations), the variants of rejected photos (one taken out of its post
had them) and those a worker wrote for a photo deleted meanwhile but could not delete (leftover_variants). Runs as one periodic job across replicas."""

import logging

import asyncpg

from media import changes, quota, reservations, store
from media.attachments.removal import delete_unused
from media.settings import Settings
from media.storage import PhotoStorage, variant_key

log = logging.getLogger(__name__)

BATCH = 200


async def clean_up(conn: asyncpg.Connection, storage: PhotoStorage, settings: Settings) -> None:
    """One round, in the job's transaction: rows are changed first and the objects deleted before the
    commit, so a storage failure rolls the rows back and the next round tries again (StorageUnavailable
    propagates to the job runner, which records it)."""
    unused = await store.unused_uploads(conn, settings.photo_unused_ttl_seconds, BATCH)
    done = await store.forget_originals(conn, BATCH)
    variants = await store.forget_variants_of_rejected(conn, BATCH)
    # Written by a worker for a photo deleted meanwhile, when storage failed as it cleaned up after it.
    variants += await store.take_leftover_variants(conn, BATCH)
    for row in unused:
        # Every size's key, not only those with a row: a processing round that never committed may have
        # written one (deleting a missing key succeeds).
        variants += sorted(
            set(row["variant_keys"])
            | {variant_key(row["school_id"], row["photo_id"], size) for size in settings.photo_variants}
        )
    # Posts' copy learns they are gone: a post naming one now is refused at once.
    await changes.announce_removed(conn, unused, changes.UNUSED_REMOVED)
    for row in (*unused, *done):
        if row["original_key"] is not None:
            await storage.delete_original(row["original_key"])
    for key in variants:
        await storage.delete_variant(key)
    await quota.forget_refusals(conn)
    await reservations.prune(conn)
    await delete_unused(conn, storage, settings)
    if unused or done or variants:
        log.info(
            "photos deleted from storage",
            extra={"unused_uploads": len(unused), "originals": len(done), "variants": len(variants)},
        )
