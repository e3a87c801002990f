"""Sending what the deliveries and mails tables hold: claimed in batches, sent over mail or Web Push,
and marked sent, retried later with back-off, or failed for good.

A one-off mail carries a secret (an access code, a reset token): it is dropped in the statement that
marks the mail sent or failed, and it never reaches a log line or a stored error.
"""

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import asyncpg

from notifier import store
from notifier.delivery_errors import DeliveryFailed
from notifier.domain import backoff_seconds
from notifier.mailer import Mailer
from notifier.mails import local_zone, one_off_email
from notifier.messages import new_post_email, new_post_push
from notifier.settings import Settings
from notifier.webpush import WebPushSender
from shared.logs import correlation_id

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "notifier_deliveries"


@dataclass(frozen=True)
class _Attempt:
    """One claimed row: how to send it, and how to record each outcome in its table."""

    names: dict[str, str]  # what log lines name it by, e.g. {"mail_id": ..., "kind": ...}
    attempts: int
    correlation_id: str | None
    send: Callable[[], Awaitable[None]]
    sent: Callable[[asyncpg.Connection], Awaitable[None]]
    failed: Callable[[asyncpg.Connection, str], Awaitable[None]]
    retry: Callable[[asyncpg.Connection, float, str], Awaitable[None]]
    # Run with a failure before it is recorded (a push subscription that is gone is deleted).
    on_failure: Callable[[asyncpg.Connection, DeliveryFailed], Awaitable[None]] | None = None
    secret: str | None = None

    def redact(self, text: str) -> str:
        """text without the secret, as given or as it appears in a link."""
        if not self.secret:
            return text
        for form in (self.secret, quote(self.secret, safe="")):
            text = text.replace(form, "[secret]")
        return text


class Deliverer:
    """Sends what is due: each ``drain()`` claims a batch of deliveries and a batch of mails, sends
    them concurrently and records each outcome; the Drainer calls it until nothing is left."""

    def __init__(
        self, pool: asyncpg.Pool, mailer: Mailer, push: WebPushSender | None, settings: Settings
    ) -> None:
        self._pool = pool
        self._mailer = mailer
        self._push = push
        self._settings = settings

    async def drain(self) -> int:
        async with self._pool.acquire() as conn:
            deliveries = await store.claim_deliveries(conn, self._settings.delivery_batch)
            mails = await store.claim_mails(conn, self._settings.delivery_batch)
        attempts = [self._delivery(row) for row in deliveries] + [self._mail(row) for row in mails]
        await asyncio.gather(*(self._run(attempt) for attempt in attempts))
        return len(attempts)

    def _delivery(self, row: asyncpg.Record) -> _Attempt:
        delivery_id = row["delivery_id"]

        async def forget_device(conn: asyncpg.Connection, exc: DeliveryFailed) -> None:
            if exc.gone and row["device_id"] is not None:
                # The browser unsubscribed or the subscription expired: stop pushing to it at all.
                await store.delete_device(conn, row["device_id"])

        return _Attempt(
            names={"delivery_id": str(delivery_id), "channel": row["channel"]},
            attempts=row["attempts"],
            correlation_id=row["correlation_id"],
            send=lambda: self._send_delivery(row),
            sent=lambda conn: store.mark_sent(conn, delivery_id),
            failed=lambda conn, error: store.mark_failed(conn, delivery_id, error),
            retry=lambda conn, seconds, error: store.retry_later(conn, delivery_id, seconds, error),
            on_failure=forget_device,
        )

    def _mail(self, row: asyncpg.Record) -> _Attempt:
        mail_id = row["mail_id"]
        return _Attempt(
            names={"mail_id": str(mail_id), "kind": row["kind"]},
            attempts=row["attempts"],
            correlation_id=row["correlation_id"],
            send=lambda: self._send_mail(row),
            sent=lambda conn: store.mark_mail_sent(conn, mail_id),
            failed=lambda conn, error: store.mark_mail_failed(conn, mail_id, error),
            retry=lambda conn, seconds, error: store.retry_mail_later(conn, mail_id, seconds, error),
            secret=row["secret"],
        )

    def _post_url(self, row: asyncpg.Record) -> str:
        return f"{self._settings.public_base_url.rstrip('/')}/posts/{row['post_id']}"

    async def _send_delivery(self, row: asyncpg.Record) -> None:
        try:
            if row["channel"] == "email":
                await self._mailer.send(self._new_post_email(row))
            else:
                subscription, payload = self._push_message(row)
                if self._push is None:
                    raise DeliveryFailed(False, "Web Push is not configured (VAPID keys)")
                await self._push.send(subscription, payload, topic=f"post-{row['post_id'].hex[:27]}")
        except ValueError as exc:
            # An address or URL that cannot be put in a message: no retry will change that.
            raise DeliveryFailed(True, f"cannot build the message: {exc}") from exc

    async def _send_mail(self, row: asyncpg.Record) -> None:
        expires_at = datetime.fromisoformat(row["context"]["expires_at"])
        if expires_at <= datetime.now(UTC):
            raise DeliveryFailed(True, "the code or link expired before the mail could be sent")
        try:
            msg = self._one_off_email(row)
        except ValueError as exc:
            raise DeliveryFailed(True, f"cannot build the message: {exc}") from exc
        await self._mailer.send(msg)

    def _new_post_email(self, row: asyncpg.Record) -> EmailMessage:
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

    def _one_off_email(self, row: asyncpg.Record) -> EmailMessage:
        return one_off_email(
            row["kind"],
            row["mail_id"],
            row["locale"],
            row["to_email"],
            row["display_name"],
            row["context"],
            row["secret"],
            local_zone(row["time_zone"], self._settings.default_time_zone),
            self._settings.public_base_url,
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

    async def _run(self, attempt: _Attempt) -> None:
        # Each attempt runs in its own task: this sets the id of the request that caused it for its logs only.
        correlation_id.set(attempt.correlation_id)
        try:
            await attempt.send()
        except DeliveryFailed as exc:
            await self._record_failure(attempt, exc)
            return
        except Exception as exc:
            # A bug or an unexpected answer: retried like a passing failure, so nothing is silently dropped.
            # Logged by hand rather than with exc_info, so that a secret in a message can be redacted.
            error = attempt.redact(repr(exc))
            trace = attempt.redact("".join(traceback.format_exception(exc)))
            log.error("delivery error", extra={**attempt.names, "error": error, "traceback": trace})
            await self._record_failure(attempt, DeliveryFailed(False, error))
            return
        async with self._pool.acquire() as conn:
            await attempt.sent(conn)
        log.info("delivered", extra=attempt.names)

    async def _record_failure(self, attempt: _Attempt, exc: DeliveryFailed) -> None:
        reason = attempt.redact(exc.reason)
        async with self._pool.acquire() as conn, conn.transaction():
            if attempt.on_failure is not None:
                await attempt.on_failure(conn, exc)
            if exc.permanent or attempt.attempts >= self._settings.delivery_max_attempts:
                await attempt.failed(conn, reason)
                log.warning("delivery failed", extra={**attempt.names, "reason": reason})
            else:
                await attempt.retry(conn, backoff_seconds(attempt.attempts, exc.retry_after), reason)
