"""Photo retention: a school keeps its photos `photo_retention_days` (a school setting, default 365) after
the last day of their group's school year; then variants, original and row are deleted for good, and posts
is told (PhotosPurged) so the photos leave its posts. Runs as one periodic job across replicas; each round
that removes anything is logged with its counts and recorded in `photo_purges` (the /metrics totals)."""

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiohttp import web

from media import store
from media.settings import Settings
from media.storage import PhotoStorage, variant_key
from shared.app import POOL
from shared.contracts import PhotosPurged
from shared.outbox import publish

log = logging.getLogger(__name__)

BATCH = 200


@dataclass(frozen=True)
class Purged:
    """What one round removed: photos (rows), and the objects deleted from the two buckets."""

    schools: int = 0
    photos: int = 0
    variants: int = 0
    originals: int = 0


async def purge_expired(
    conn: asyncpg.Connection, storage: PhotoStorage, settings: Settings, at: datetime | None = None
) -> Purged:
    """One round of up to BATCH photos past retention at `at` (default now), in the job's transaction: rows
    deleted and the event written first, objects deleted before the commit, so a storage failure rolls it
    all back and the next round tries again (StorageUnavailable propagates to the job runner)."""
    rows = await store.expired_photos(conn, BATCH, at)
    if not rows:
        return Purged()
    await store.delete_photos(conn, [r["photo_id"] for r in rows])
    by_school: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    variants = originals = 0
    for row in rows:
        by_school[row["school_id"]].append(row["photo_id"])
        # Every size's key, not only those with a row: a variant written by a processing round that never
        # committed has none, and deleting a missing key succeeds.
        keys = set(row["variant_keys"]) | {
            variant_key(row["school_id"], row["photo_id"], size) for size in settings.photo_variants
        }
        for key in sorted(keys):
            await storage.delete_variant(key)
        variants += len(row["variant_keys"])
        if row["original_key"] is not None:
            await storage.delete_original(row["original_key"])
            originals += 1
    for school_id, photo_ids in by_school.items():
        await publish(conn, PhotosPurged(school_id=school_id, photo_ids=photo_ids), school_id)
    purged = Purged(len(by_school), len(rows), variants, originals)
    await store.record_purge(conn, purged.schools, purged.photos, purged.variants, purged.originals)
    log.info(
        "photos purged after their school year",
        extra={
            "schools": purged.schools,
            "photos": purged.photos,
            "variants": purged.variants,
            "originals": purged.originals,
        },
    )
    return purged


async def retention_metrics(app: web.Application) -> list[str]:
    """Prometheus text: ``klaspost_media_purged_total{kind}`` (photos, variants, originals removed by
    retention, over all replicas) and ``klaspost_media_last_purge_timestamp_seconds``."""
    async with app[POOL].acquire() as conn:
        totals = await store.purge_totals(conn)
    lines = ["# TYPE klaspost_media_purged_total counter"]
    for kind in ("photos", "variants", "originals"):
        lines.append(f'klaspost_media_purged_total{{kind="{kind}"}} {totals[kind]}')
    lines.append("# TYPE klaspost_media_last_purge_timestamp_seconds gauge")
    lines.append(f"klaspost_media_last_purge_timestamp_seconds {float(totals['last_purge']):.0f}")
    return lines
