"""Notifier's own resources beside the shared ones: mail, Web Push and the delivery worker."""

from collections.abc import AsyncIterator

from aiohttp import web

from notifier.delivery import NOTIFY_CHANNEL, Deliverer
from notifier.mailer import Mailer
from notifier.settings import Settings
from notifier.webpush import WebPushSender
from shared.app import HTTP, POOL, settings_of
from shared.drain import Drainer

DELIVERIES = web.AppKey("deliveries", Drainer)
DELIVERER = web.AppKey("deliverer", Deliverer)


async def delivery(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    # Without VAPID keys the service still mails; push deliveries wait until keys are configured.
    push = WebPushSender(settings, session=app[HTTP]) if settings.vapid_private_key else None
    mailer = Mailer(settings)  # a pool of SMTP connections kept open between sends
    deliverer = Deliverer(app[POOL], mailer, push, settings)
    app[DELIVERER] = deliverer
    drainer = Drainer(
        "notifier-deliveries",
        settings.database_url,
        NOTIFY_CHANNEL,
        deliverer.drain,
        settings.outbox_sweep_seconds,
    )
    await drainer.start()
    app[DELIVERIES] = drainer
    yield
    await drainer.stop()
    await mailer.close()
