"""Notifier's own resources beside the shared ones: mail, push (Web Push, FCM, APNs) and the delivery
worker."""

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from notifier.apns import ApnsSender
from notifier.delivery import NOTIFY_CHANNEL, Deliverer
from notifier.device_limits import RegistrationLimiter
from notifier.fcm import FcmSender
from notifier.mailer import Mailer
from notifier.settings import Settings, public_url_problem
from notifier.webpush import WebPushSender
from shared.app import POOL, settings_of
from shared.drain import Drainer

DELIVERIES = web.AppKey("deliveries", Drainer)
DELIVERER = web.AppKey("deliverer", Deliverer)
REGISTRATIONS = web.AppKey("device_registrations", RegistrationLimiter)

log = logging.getLogger(__name__)


def warn_about_local_urls(settings: Settings) -> list[str]:
    """Logs (at start-up, loudly) each public URL left at a local default: unset, PUBLIC_API_URL
    (NOTIFIER_PUBLIC_URL in compose) is http://localhost:8084, and every one-click unsubscribe link
    in every mail would silently lead nowhere. Returns the problems."""
    problems = []
    for name, url in (
        ("PUBLIC_API_URL", settings.public_api_url),
        ("PUBLIC_BASE_URL", settings.public_base_url),
    ):
        problem = public_url_problem(url)
        if problem:
            problems.append(f"{name} {problem}")
            log.warning(
                f"{name} {problem}: links in mails will not work for parents; set it to this server's "
                "public https URL",
                extra={"setting": name, "url": url},
            )
    problem = settings.mail_from_problem()
    if problem:  # as VAPID_SUBJECT's domain (issue 8 case 6), warned about only with a real relay
        problems.append(f"MAIL_FROM {problem}")
        log.warning(
            f"MAIL_FROM {problem}: parents will get no mail; set it to a mailbox on your own domain",
            extra={"setting": "MAIL_FROM"},
        )
    return problems


async def delivery(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    warn_about_local_urls(settings)
    app[REGISTRATIONS] = RegistrationLimiter(settings.device_registrations_per_hour)
    async with contextlib.AsyncExitStack() as stack:
        # Without a channel's keys the service still mails; devices of that kind are refused at
        # registration, and pushes to ones registered earlier wait until the keys are back.
        push = None
        if settings.vapid_private_key is not None:
            push = WebPushSender(settings)  # its own session: connections to push services kept alive
            await push.start()
            stack.push_async_callback(push.close)
        fcm = None
        if settings.fcm_credentials is not None:
            fcm = FcmSender(settings)  # its own session: connections to FCM kept alive
            await fcm.start()
            stack.push_async_callback(fcm.close)
        apns = None
        if settings.apns_key is not None:
            apns = ApnsSender(settings)  # a pool of HTTP/2 connections to APNs
            await apns.start()
            stack.push_async_callback(apns.close)
        mailer = Mailer(settings)  # a pool of SMTP connections kept open between sends
        stack.push_async_callback(mailer.close)
        deliverer = Deliverer(app[POOL], mailer, push, settings, fcm=fcm, apns=apns)
        app[DELIVERER] = deliverer
        drainer = Drainer(
            "notifier-deliveries",
            settings.database_url,
            NOTIFY_CHANNEL,
            deliverer.drain,
            settings.outbox_sweep_seconds,
            on_payload=deliverer.notified,
        )
        await drainer.start()
        app[DELIVERIES] = drainer
        yield
        # Stopping (SIGTERM): claim nothing more, let what is in flight finish within the grace,
        # then give back what is still held so another replica takes it at once.
        await deliverer.stop(settings.delivery_stop_grace_seconds)
        await drainer.stop()
        await deliverer.release()
