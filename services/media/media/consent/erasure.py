"""Deleting the photos of an erased child (issue 9): variants, original and row, with nothing left in
either bucket. Marked by the ChildErased handler; a drain woken after its commit (and sweeping now and
then) deletes them, one transaction per batch: rows deleted first, objects deleted before the commit, so
a storage failure rolls the batch back and the next sweep tries again."""

import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from media.consent import store
from media.resources import STORAGE
from media.settings import Settings
from media.storage import PhotoStorage, StorageUnavailable, variant_key
from shared.app import POOL, settings_of
from shared.drain import Drainer

log = logging.getLogger(__name__)

ERASURE_CHANNEL = "media_erasure"
BATCH = 100
ERASURE = web.AppKey("erasure", Drainer)


async def erase_marked(pool: asyncpg.Pool, storage: PhotoStorage, settings: Settings) -> int:
    """One batch of marked photos deleted for good; the number deleted (0 while storage is down)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            rows = await store.to_erase(conn, BATCH)
            for row in rows:
                # Every size's key, not only those with a row: a processing round that never committed
                # may have written one (deleting a missing key succeeds).
                keys = set(row["variant_keys"]) | {
                    variant_key(row["school_id"], row["photo_id"], size) for size in settings.photo_variants
                }
                for key in sorted(keys):
                    await storage.delete_variant(key)
                if row["original_key"] is not None:
                    await storage.delete_original(row["original_key"])
    except StorageUnavailable as exc:
        log.warning("storage unavailable for erasing photos; will retry", extra={"error": str(exc)})
        return 0
    if rows:
        log.info("photos of an erased child deleted", extra={"photos": len(rows)})
    return len(rows)


async def erasure(app: web.Application) -> AsyncIterator[None]:
    """The drain of photos to erase (a context of media's app, after storage)."""
    settings = settings_of(app, Settings)
    pool, storage = app[POOL], app[STORAGE]

    async def drain() -> int:
        return await erase_marked(pool, storage, settings)

    drainer = Drainer(
        "media-erasure", settings.database_url, ERASURE_CHANNEL, drain, settings.outbox_sweep_seconds
    )
    await drainer.start()
    app[ERASURE] = drainer
    yield
    await drainer.stop()
