"""Send later: a periodic job, once across replicas, that publishes the posts whose time has come."""

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
from aiohttp import web

from posts.publishing import attachments, store
from posts.publishing.api import published_event
from posts.publishing.domain import PUBLISH_EVERY_SECONDS
from shared.app import POOL
from shared.jobs import PeriodicJob
from shared.outbox import publish

BATCH = 500


async def publish_due(conn: asyncpg.Connection, at: datetime | None = None) -> int:
    """Publish the scheduled posts due by ``at`` (default: the database's now) in the caller's
    transaction, each with its PostPublished; how many. Tests call it with a chosen ``at``."""
    published = 0
    while rows := await store.publish_due(conn, at, BATCH):
        for row in rows:
            attached = await attachments.ids_of_post(conn, row["post_id"])
            await publish(conn, published_event(row, list(row["photo_ids"]), attached), row["school_id"])
            # Media serves them to the group from now on.
            await attachments.tell_media(conn, attached, row["school_id"])
        published += len(rows)
    return published


async def send_later(app: web.Application) -> AsyncIterator[None]:
    """The job as one of the app's contexts."""

    async def job(conn: asyncpg.Connection) -> None:
        await publish_due(conn)

    periodic = PeriodicJob(app[POOL], "posts-send-later", PUBLISH_EVERY_SECONDS, job)
    await periodic.start()
    yield
    await periodic.stop()
