"""Media's own resources beside the shared ones: storage, the worker processes, the pipeline."""

from collections.abc import AsyncIterator

from aiohttp import web

from media.imaging import PhotoProcessor
from media.processing import NOTIFY_CHANNEL, PhotoPipeline
from media.settings import Settings
from media.storage import PhotoStorage
from shared.app import POOL, settings_of
from shared.drain import Drainer

STORAGE = web.AppKey("storage", PhotoStorage)
PIPELINE = web.AppKey("pipeline", Drainer)


async def storage(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    photo_storage = PhotoStorage(settings)
    await photo_storage.ensure_buckets()
    app[STORAGE] = photo_storage
    yield
    photo_storage.close()


async def pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    processor = PhotoProcessor(settings.processing_workers)
    photos = PhotoPipeline(app[POOL], app[STORAGE], processor, settings)
    drainer = Drainer(
        "media-processing", settings.database_url, NOTIFY_CHANNEL, photos.drain, settings.outbox_sweep_seconds
    )
    await drainer.start()
    app[PIPELINE] = drainer
    yield
    await drainer.stop()
    await processor.close()
