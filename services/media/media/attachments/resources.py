"""Attachments' resources beside media's: the drainer that deletes removed attachments from storage."""

from collections.abc import AsyncIterator

from aiohttp import web

from media.attachments import store
from media.attachments.removal import delete_removed
from media.resources import STORAGE
from media.settings import Settings
from shared.app import POOL, settings_of
from shared.drain import Drainer

REMOVAL = web.AppKey("attachment_removal", Drainer)


async def removal(app: web.Application) -> AsyncIterator[None]:
    """The drainer as one of the app's contexts (after storage)."""
    settings = settings_of(app, Settings)
    pool, storage = app[POOL], app[STORAGE]

    async def drain() -> int:
        async with pool.acquire() as conn, conn.transaction():
            return await delete_removed(conn, storage)

    drainer = Drainer(
        "media-attachment-removal",
        settings.database_url,
        store.REMOVED_CHANNEL,
        drain,
        settings.outbox_sweep_seconds,
    )
    await drainer.start()
    app[REMOVAL] = drainer
    yield
    await drainer.stop()
