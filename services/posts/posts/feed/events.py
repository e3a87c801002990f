"""What the feed keeps of other services' events: the notifier's delivery figures per post."""

import asyncpg

from posts.feed import store
from shared.consumer import Handlers
from shared.contracts import DeliveryReport
from shared.envelope import Envelope


def keep_delivery_reports(handlers: Handlers) -> None:
    """Register the handler that keeps the newest DeliveryReport of each post."""

    @handlers.on(DeliveryReport)
    async def delivery_reported(conn: asyncpg.Connection, _env: Envelope, event: DeliveryReport) -> None:
        await store.record_delivery_report(conn, event)
