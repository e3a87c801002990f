"""Sends to iPhone apps through the Apple Push Notification service: HTTP/2 over TLS, authorised
with a provider token (an ES256 JWT signed with the team's .p8 key, renewed every 30 minutes).

aioapns speaks the protocol: a pool of at most ``apns_connections`` HTTP/2 connections, each carrying
many sends at once as streams and kept open while in use (Apple asks providers to keep connections
open rather than reconnect per message). Its server is a class attribute of its protocol class, so a
subclass per sender names the configured one (APNS_HOST/APNS_PORT; tests point it at a local server).

Answers (Apple's "Handling notification responses from APNs"): 410 Unregistered, 400 BadDeviceToken
and 400 DeviceTokenNotForTopic mean the token is dead or not this app's (the device is removed);
429 TooManyRequests and 500/503 are retried with back-off; 403 provider-token errors are retried
(the operator fixes the key; a fresh token is made every 30 minutes); anything else is permanent.
"""

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsDevelopmentClientProtocol, APNsProductionClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded

from notifier.delivery_errors import DeliveryFailed
from notifier.settings import Settings

log = logging.getLogger(__name__)

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"
MAX_COLLAPSE_ID_BYTES = 64
_GONE = {"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"}


def load_key(value: str) -> str:
    """The .p8 key as PEM text: ``value`` is the PEM itself or the path of the file."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")  # one line in an env file, newlines written as \n
    return Path(value).read_text()


class ApnsSender:
    """``await start()`` once on the running loop, ``send()`` per device, ``close()`` at the end."""

    def __init__(self, settings: Settings) -> None:
        if settings.apns_key is None or not (
            settings.apns_key_id and settings.apns_team_id and settings.apns_topic
        ):
            raise ValueError("APNs is not configured (APNS_KEY, APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC)")
        self._settings = settings
        self._key = load_key(settings.apns_key.get_secret_value())
        self._client: APNs | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        settings = self._settings
        context = ssl.create_default_context(cafile=settings.apns_ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["h2"])
        client = APNs(
            key=self._key,
            key_id=settings.apns_key_id,
            team_id=settings.apns_team_id,
            topic=settings.apns_topic,
            max_connections=settings.apns_connections,
            # One try here: a failed connection becomes a DeliveryFailed that the delivery's own
            # back-off retries, instead of aioapns sleeping in a loop of its own.
            max_connection_attempts=1,
            use_sandbox=settings.apns_use_sandbox,
            ssl_context=context,
            err_func=_quiet,
        )
        base = APNsDevelopmentClientProtocol if settings.apns_use_sandbox else APNsProductionClientProtocol
        host = settings.apns_host or (SANDBOX_HOST if settings.apns_use_sandbox else PRODUCTION_HOST)
        client.pool.protocol_class = type(
            "ConfiguredAPNsProtocol", (base,), {"APNS_SERVER": host, "APNS_PORT": settings.apns_port}
        )
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.pool.close()
            self._client = None

    async def send(self, token: str, payload: Mapping[str, str], collapse_key: str) -> None:
        """Send the notification ``payload`` (title, body, url, tag) to one device token as an alert;
        ``apns-collapse-id`` (the delivery's idempotency key) makes a repeat replace the shown one.
        Raises DeliveryFailed."""
        if self._client is None:
            raise RuntimeError("ApnsSender.start() was not called")
        if len(collapse_key.encode()) > MAX_COLLAPSE_ID_BYTES:
            # Apple refuses a longer one (400 BadCollapseId); a digest is as stable across repeats.
            collapse_key = hashlib.sha256(collapse_key.encode()).hexdigest()
        request = NotificationRequest(
            device_token=token,
            message=apns_payload(payload, collapse_key),
            time_to_live=self._settings.push_ttl_seconds,
            priority=10,
            collapse_key=collapse_key,
            push_type=PushType.ALERT,
        )
        try:
            async with asyncio.timeout(self._settings.push_timeout_seconds):
                result = await self._client.send_notification(request)
        except (MaxAttemptsExceeded, ConnectionClosed, OSError, TimeoutError) as exc:
            raise DeliveryFailed(False, f"APNs unreachable: {exc!r}") from exc
        if not result.is_successful:
            raise _classify(result)


def apns_payload(payload: Mapping[str, str], collapse_key: str) -> dict[str, Any]:
    """The JSON APNs hands the app: the alert iOS shows, grouped by the tag, and the post's link."""
    return {
        "aps": {
            "alert": {"title": payload["title"], "body": payload["body"]},
            "sound": "default",
            "thread-id": collapse_key,
        },
        "url": payload["url"],
        "tag": collapse_key,
    }


def _classify(result: NotificationResult) -> DeliveryFailed:
    status = int(result.status) if str(result.status).isdigit() else 0
    reason = f"APNs {result.status} {result.description or ''}".strip()
    if status == 410 or result.description in _GONE:
        return DeliveryFailed(True, reason, gone=True)
    if status in (403, 429) or status >= 500 or status == 0:
        return DeliveryFailed(False, reason)
    return DeliveryFailed(True, reason)


async def _quiet(_request: NotificationRequest, _result: NotificationResult) -> None:
    """aioapns logs every refusal as an error; the Deliverer logs them once, with what it does next."""
