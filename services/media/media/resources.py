"""Media's own resources beside the shared ones: storage, the worker processes (with the bound on upload
checks), the pipeline, the clean-up job and the retention job."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from media.cleanup import clean_up
from media.imaging import PhotoProcessor
from media.processing import NOTIFY_CHANNEL, PhotoPipeline
from media.retention import BATCH, purge_expired
from media.settings import Settings
from media.storage import PhotoStorage
from shared.app import POOL, settings_of
from shared.drain import Drainer
from shared.jobs import PeriodicJob

STORAGE = web.AppKey("storage", PhotoStorage)
PROCESSOR = web.AppKey("processor", PhotoProcessor)
CHECKS = web.AppKey("upload_checks", asyncio.Semaphore)
PIPELINE = web.AppKey("pipeline", Drainer)
CLEANUP = web.AppKey("cleanup", PeriodicJob)
RETENTION = web.AppKey("retention", PeriodicJob)
# Batches one retention round purges at most (one transaction); the rest waits for the next round.
_RETENTION_BATCHES = 25


async def storage(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    photo_storage = PhotoStorage(settings)
    await photo_storage.ensure_buckets()
    app[STORAGE] = photo_storage
    yield
    photo_storage.close()


async def pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    processor = PhotoProcessor(settings.processing_workers, settings.upload_check_seconds)
    app[PROCESSOR] = processor
    app[CHECKS] = asyncio.Semaphore(settings.upload_checks_at_once)
    photos = PhotoPipeline(app[POOL], app[STORAGE], processor, settings)
    drainer = Drainer(
        "media-processing", settings.database_url, NOTIFY_CHANNEL, photos.drain, settings.outbox_sweep_seconds
    )
    await drainer.start()
    app[PIPELINE] = drainer
    yield
    await drainer.stop()
    await processor.close()


async def cleanup(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    photo_storage = app[STORAGE]

    async def job(conn: asyncpg.Connection) -> None:
        await clean_up(conn, photo_storage, settings)

    periodic = PeriodicJob(app[POOL], "media-photo-cleanup", settings.photo_cleanup_every_seconds, job)
    await periodic.start()
    app[CLEANUP] = periodic
    yield
    await periodic.stop()


async def retention(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    photo_storage = app[STORAGE]

    async def job(conn: asyncpg.Connection) -> None:
        for _ in range(_RETENTION_BATCHES):
            if (await purge_expired(conn, photo_storage, settings)).photos < BATCH:
                return

    periodic = PeriodicJob(app[POOL], "media-photo-retention", settings.photo_retention_every_seconds, job)
    await periodic.start()
    app[RETENTION] = periodic
    yield
    await periodic.stop()
