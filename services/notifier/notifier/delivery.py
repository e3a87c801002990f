"""Sending what the deliveries table holds: claimed in batches, sent over mail or Web Push, and
marked sent, retried later with back-off, or failed for good."""

import asyncio
import logging
from email.message import EmailMessage
from typing import Any

import asyncpg

from notifier import store
from notifier.delivery_errors import DeliveryFailed
from notifier.domain import backoff_seconds
from notifier.mailer import Mailer
from notifier.messages import new_post_email, new_post_push
from notifier.settings import Settings
from notifier.webpush import WebPushSender
from shared.logs import correlation_id

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "notifier_deliveries"


class Deliverer:
    def __init__(
        self, pool: asyncpg.Pool, mailer: Mailer, push: WebPushSender | None, settings: Settings
    ) -> None:
        self._pool = pool
        self._mailer = mailer
        self._push = push
        self._settings = settings

    async def drain(self) -> int:
        async with self._pool.acquire() as conn:
            claimed = await store.claim_deliveries(conn, self._settings.delivery_batch)
        await asyncio.gather(*(self._deliver(row) for row in claimed))
        return len(claimed)

    def _post_url(self, row: asyncpg.Record) -> str:
        return f"{self._settings.public_base_url.rstrip('/')}/posts/{row['post_id']}"

    async def _send(self, row: asyncpg.Record) -> None:
        try:
            if row["channel"] == "email":
                await self._mailer.send(self._email(row))
            else:
                subscription, payload = self._push_message(row)
                if self._push is None:
                    raise DeliveryFailed(False, "Web Push is not configured (VAPID keys)")
                await self._push.send(subscription, payload, topic=f"post-{row['post_id'].hex[:27]}")
        except ValueError as exc:
            # An address or URL that cannot be put in a message: no retry will change that.
            raise DeliveryFailed(True, f"cannot build the message: {exc}") from exc

    def _email(self, row: asyncpg.Record) -> EmailMessage:
        return new_post_email(
            row["locale"],
            row["display_name"],
            row["email"],
            row["group_name"],
            row["excerpt"],
            self._post_url(row),
            row["delivery_id"],
            self._settings.mail_from,
        )

    def _push_message(self, row: asyncpg.Record) -> tuple[dict[str, Any], dict[str, str]]:
        device = row["device"]
        if device is None:
            raise DeliveryFailed(True, "the device was removed", gone=True)
        payload = new_post_push(
            row["locale"], row["group_name"], row["excerpt"], self._post_url(row), row["post_id"]
        )
        subscription = {
            "endpoint": device["endpoint"],
            "keys": {"p256dh": device["p256dh"], "auth": device["auth"]},
        }
        return subscription, payload

    async def _deliver(self, row: asyncpg.Record) -> None:
        # Each delivery runs in its own task: this sets the id of the request that caused it for its logs only.
        correlation_id.set(row["correlation_id"])
        delivery_id = row["delivery_id"]
        try:
            await self._send(row)
        except DeliveryFailed as exc:
            async with self._pool.acquire() as conn, conn.transaction():
                if exc.gone and row["device_id"] is not None:
                    # The browser unsubscribed or the subscription expired: stop pushing to it at all.
                    await store.delete_device(conn, row["device_id"])
                if exc.permanent or row["attempts"] >= self._settings.delivery_max_attempts:
                    await store.mark_failed(conn, delivery_id, exc.reason)
                    log.warning(
                        "delivery failed",
                        extra={
                            "delivery_id": str(delivery_id),
                            "channel": row["channel"],
                            "reason": exc.reason,
                        },
                    )
                else:
                    await store.retry_later(
                        conn, delivery_id, backoff_seconds(row["attempts"], exc.retry_after), exc.reason
                    )
            return
        except Exception as exc:
            # A bug or an unexpected answer: retried like a passing failure, so nothing is silently dropped.
            log.exception("delivery error", extra={"delivery_id": str(delivery_id)})
            async with self._pool.acquire() as conn:
                if row["attempts"] >= self._settings.delivery_max_attempts:
                    await store.mark_failed(conn, delivery_id, repr(exc))
                else:
                    await store.retry_later(
                        conn, delivery_id, backoff_seconds(row["attempts"], None), repr(exc)
                    )
            return
        async with self._pool.acquire() as conn:
            await store.mark_sent(conn, delivery_id)
        log.info("delivered", extra={"delivery_id": str(delivery_id), "channel": row["channel"]})
