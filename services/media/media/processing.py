"""Turning accepted uploads into the variants parents see, as soon as they are accepted (before any post
uses them, so a post only ever carries a photo that is processing or ready): claimed from the database,
decoded in worker processes, written to storage, then marked ready in one commit with PhotoChanged (and
PhotoProcessed when the photo is in a post already); the original is deleted after that. While storage is unreachable a photo is tried again and again, never given
up: only failures of the photo itself (a crashing decoder) count towards MAX_PROCESSING_ATTEMPTS. An
original storage answers it does not have (404) is no outage: the photo is rejected at once."""

import asyncio
import logging
import os
import tempfile
import uuid

import asyncpg

from media import changes, store
from media.domain import MAX_PROCESSING_ATTEMPTS, WATERMARK
from media.imaging import ImageRejected, PhotoProcessor
from media.settings import Settings
from media.storage import OriginalMissing, PhotoStorage, StorageUnavailable, variant_key
from shared.contracts import PhotoProcessed, PhotoRejected
from shared.logs import correlation_id
from shared.outbox import publish

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "media_processing"
# The reason a photo whose original is no longer in storage is rejected with (fit to show its teacher).
MISSING_ORIGINAL = "the photo's file is missing from storage; upload it again"


class PhotoPipeline:
    def __init__(
        self, pool: asyncpg.Pool, storage: PhotoStorage, processor: PhotoProcessor, settings: Settings
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._processor = processor
        self._settings = settings

    async def drain(self) -> int:
        """Process one round of claimed photos, as many at a time as there are workers."""
        async with self._pool.acquire() as conn:
            claimed = await store.claim(conn, self._settings.processing_workers)
        await asyncio.gather(*(self._process(row) for row in claimed))
        return len(claimed)

    async def _process(self, photo: asyncpg.Record) -> None:
        # Each photo runs in its own task: this sets the id of the request that caused it for its logs only.
        correlation_id.set(photo["correlation_id"])
        photo_id: uuid.UUID = photo["photo_id"]
        try:
            with tempfile.TemporaryDirectory(prefix="klaspost-photo-") as folder:
                path = os.path.join(folder, "original")
                await self._storage.download_original(photo["original_key"], path)
                result = await self._processor.process(
                    path,
                    self._settings.photo_variants,
                    self._settings.photo_max_pixels,
                    watermark=await self._watermark(photo["school_id"]),
                )
            written = []
            for variant in result.variants.values():
                key = variant_key(photo["school_id"], photo_id, variant.size)
                await self._storage.put_variant(key, variant.data, variant.content_type)
                written.append((variant.size, key, variant.width, variant.height, len(variant.data)))
        except ImageRejected as exc:
            await self._reject(photo, exc.reason)
            return
        except OriginalMissing:
            # Not an outage: the object is gone (deleted by hand, lost by the storage), and no retry brings it
            # back. Rejected, so posts drop it and the clean-up and retention deal with its row.
            log.error("original missing from storage; photo rejected", extra={"photo_id": str(photo_id)})
            await self._reject(photo, MISSING_ORIGINAL)
            return
        except StorageUnavailable as exc:
            log.warning(
                "storage unavailable for photo processing; will retry",
                extra={"photo_id": str(photo_id), "error": str(exc)},
            )
            async with self._pool.acquire() as conn:
                await store.release(conn, photo_id, self._settings.storage_retry_seconds, counted=False)
            return
        except Exception as exc:
            if photo["attempts"] >= MAX_PROCESSING_ATTEMPTS:
                log.exception("photo processing gave up", extra={"photo_id": str(photo_id)})
                await self._reject(photo, "the photo could not be processed")
            else:
                log.warning(
                    "photo processing failed; will retry",
                    extra={"photo_id": str(photo_id), "error": repr(exc)},
                )
                async with self._pool.acquire() as conn:
                    await store.release(conn, photo_id, 2.0 ** photo["attempts"])
            return
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = not await store.lock_photo(conn, photo_id)
            if deleted:
                # Deleted while its worker was busy (a child's erasure, retention, clean-up): the deletion
                # removed what was stored then, so the variants written since are this worker's to remove.
                # Noted first, in case storage fails now: nothing else would ever find them again.
                await store.list_leftover_variants(conn, [w[1] for w in written])
            else:
                marked = await store.mark_ready(conn, photo_id, result.width, result.height, written)
                if marked is not None:
                    if marked["post_id"] is not None:
                        processed = PhotoProcessed(
                            photo_id=photo_id, post_id=marked["post_id"], variants=[w[0] for w in written]
                        )
                        await publish(conn, processed, photo["school_id"])
                    await changes.announce(conn, [photo_id])
        if deleted:
            await self._delete_variants(photo, [w[1] for w in written])
            return
        log.info("photo processed", extra={"photo_id": str(photo_id), "variants": [w[0] for w in written]})
        await self._delete_original(photo)

    async def _delete_variants(self, photo: asyncpg.Record, keys: list[str]) -> None:
        try:
            for key in keys:
                await self._storage.delete_variant(key)
        except StorageUnavailable:
            # Their keys are noted (leftover_variants): the clean-up job deletes them once storage is back.
            log.warning(
                "variants of a deleted photo not deleted yet; left for the clean-up",
                extra={"photo_id": str(photo["photo_id"])},
            )
            return
        async with self._pool.acquire() as conn:
            await store.forget_leftover_variants(conn, keys)
        log.info(
            "photo deleted while processing; its variants removed", extra={"photo_id": str(photo["photo_id"])}
        )

    async def _watermark(self, school_id: uuid.UUID) -> str | None:
        """The school's "do not share" mark for its variants, if it has switched it on (seed rule 6); as the
        school is when its photo is processed."""
        async with self._pool.acquire() as conn:
            school = await store.school(conn, school_id)
        if school is None or not school["watermark_photos"]:
            return None
        return WATERMARK.get(school["locale"], WATERMARK["nl"]).format(school=school["name"])

    async def _reject(self, photo: asyncpg.Record, reason: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            post_id = await store.mark_rejected(conn, photo["photo_id"], reason)
            if post_id is not None:
                rejected = PhotoRejected(photo_id=photo["photo_id"], post_id=post_id, reason=reason)
                await publish(conn, rejected, photo["school_id"])
            # Posts takes it out of any post that carries it, and no new post can name it.
            await changes.announce(conn, [photo["photo_id"]])
        log.warning("photo rejected", extra={"photo_id": str(photo["photo_id"]), "reason": reason})
        await self._delete_original(photo)

    async def _delete_original(self, photo: asyncpg.Record) -> None:
        # The original (with every bit of the camera's metadata) is of no more use once its photo is ready
        # or rejected. Should storage fail here, the clean-up job deletes it later.
        try:
            await self._storage.delete_original(photo["original_key"])
        except StorageUnavailable:
            log.warning("original not deleted yet", extra={"photo_id": str(photo["photo_id"])})
            return
        async with self._pool.acquire() as conn:
            await store.forget_original(conn, photo["photo_id"])
