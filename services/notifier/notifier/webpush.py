"""Sends Web Push messages (RFC 8030, encrypted per RFC 8291, signed with VAPID per RFC 8292).

Each push is encrypted for its browser with http_ece (aes128gcm, a fresh ephemeral key and salt per
message, as RFC 8291 requires) and POSTed over the sender's one aiohttp session; the VAPID token is
signed once per push service and reused (vapid.VapidTokens). pywebpush did the same steps but signed
a token, copied the claims and built its helper objects again for every push: half the CPU of a push.
"""

import asyncio
import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from notifier.delivery_errors import DeliveryFailed
from notifier.messages import encode_push_payload
from notifier.settings import Settings
from notifier.vapid import VapidTokens, generate_vapid_keys, public_key_of

__all__ = [
    "MAX_PLAINTEXT_BYTES",
    "PreparedPush",
    "WebPushSender",
    "generate_vapid_keys",
    "retry_after_seconds",
]

# 4096 bytes on the wire minus aes128gcm's header (86), padding delimiter (1) and tag (16).
MAX_PLAINTEXT_BYTES = 4096 - 86 - 1 - 16
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")  # RFC 8030 5.4: base64url alphabet, at most 32


class WebPushSender:
    """Shares one aiohttp session across sends: use ``async with`` or ``start()``/``close()``, or pass
    a session the caller owns (then ``close()`` leaves it open). The session keeps connections alive
    between sends; at most ``push_connections_per_host`` sends go to one push service at once, so a
    fan-out reuses a few connections instead of opening one per subscription."""

    def __init__(self, settings: Settings, *, session: aiohttp.ClientSession | None = None) -> None:
        if settings.vapid_private_key is None:
            raise ValueError("VAPID_PRIVATE_KEY is not set; `python -m notifier.vapid` makes a pair")
        private = settings.vapid_private_key.get_secret_value()
        if settings.vapid_public_key is not None and settings.vapid_public_key != public_key_of(private):
            # Browsers subscribed with VAPID_PUBLIC_KEY; signing with another key gets every push refused.
            raise ValueError("VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY")
        self._tokens = VapidTokens(private, settings.vapid_subject or "")
        self._settings = settings
        self._timeout = aiohttp.ClientTimeout(total=settings.push_timeout_seconds)
        self._session = session
        self._owns_session = session is None
        self._per_host: dict[str, asyncio.Semaphore] = {}

    async def start(self) -> None:
        if self._session is None:
            # Connections to each push service stay open between sends (keep-alive).
            connector = aiohttp.TCPConnector(
                limit_per_host=self._settings.push_connections_per_host, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def send(
        self, subscription: Mapping[str, Any], payload: Mapping[str, Any], topic: str | None = None
    ) -> None:
        """Deliver payload (as JSON) to one browser subscription ``{"endpoint", "keys": {"p256dh",
        "auth"}}``. A topic makes the push service replace an undelivered message with the same topic."""
        await self.post(self.prepare(subscription, payload, topic))

    def prepare(
        self, subscription: Mapping[str, Any], payload: Mapping[str, Any], topic: str | None = None
    ) -> "PreparedPush":
        """The push encrypted and signed, ready to post: all of a send's CPU work, none of its network.
        Raises DeliveryFailed (permanent) for a payload too large or keys that cannot be used, and
        ValueError for a topic no push service takes (a programming error)."""
        data = encode_push_payload(payload)
        if len(data) > MAX_PLAINTEXT_BYTES:
            raise DeliveryFailed(True, f"payload of {len(data)} bytes exceeds {MAX_PLAINTEXT_BYTES}")
        headers = {"TTL": str(self._settings.push_ttl_seconds), "Content-Encoding": "aes128gcm"}
        if topic is not None:
            if not _TOPIC.fullmatch(topic):
                raise ValueError(f"a push topic is 1-32 characters of [A-Za-z0-9_-]: {topic!r}")
            headers["Topic"] = topic
        endpoint = str(subscription.get("endpoint", ""))
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        try:
            body = _encrypt(subscription.get("keys"), data)
        except ValueError as exc:
            # Undecodable p256dh/auth or a point not on the curve: this subscription can never work.
            raise DeliveryFailed(True, f"invalid subscription keys: {exc}") from exc
        headers["Authorization"] = self._tokens.authorization(origin)
        return PreparedPush(endpoint, origin, headers, body)

    async def post(self, push: "PreparedPush") -> None:
        """POST a prepared push to its push service. Raises DeliveryFailed: temporary when the service
        is unreachable, times out, or answers 408, 429 (with its Retry-After) or 5xx; permanent
        otherwise, ``gone`` for 404 and 410 (the subscription no longer exists)."""
        if self._session is None:
            raise RuntimeError("WebPushSender.start() was not called")
        try:
            async with (
                self._slot(push.origin),
                self._session.post(
                    push.endpoint, data=push.body, headers=push.headers, timeout=self._timeout
                ) as response,
            ):
                if response.status > 202:
                    text = await response.text(errors="replace")
                    raise _classify(
                        response.status, response.reason, text, response.headers.get("Retry-After")
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryFailed(False, f"push service unreachable: {exc!r}") from exc

    def _slot(self, origin: str) -> asyncio.Semaphore:
        if origin not in self._per_host:
            self._per_host[origin] = asyncio.Semaphore(self._settings.push_connections_per_host)
        return self._per_host[origin]


@dataclass(frozen=True)
class PreparedPush:
    endpoint: str
    origin: str  # the push service (scheme://host[:port]): its own limit of sends at once
    headers: dict[str, str]
    body: bytes


def _encrypt(keys: Any, data: bytes) -> bytes:
    """data encrypted for the browser (RFC 8291 aes128gcm, one record): a fresh ephemeral P-256 key
    and salt per message. Raises ValueError for keys that are missing or cannot be used."""
    if not isinstance(keys, Mapping) or not keys.get("p256dh") or not keys.get("auth"):
        raise ValueError("the subscription has no p256dh and auth keys")
    receiver, auth = _b64url_decode(str(keys["p256dh"])), _b64url_decode(str(keys["auth"]))
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        data, private_key=ephemeral, dh=receiver, auth_secret=auth, version="aes128gcm"
    )
    return body


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _classify(status: int, reason: str | None, text: str, retry_after: str | None) -> DeliveryFailed:
    message = " ".join(f"Push failed: {status} {reason or ''} {text}".split())[:300]
    if status in (404, 410):
        return DeliveryFailed(True, message, gone=True)
    if status in (408, 429) or status >= 500:
        return DeliveryFailed(False, message, retry_after=retry_after_seconds(retry_after))
    # 400 malformed, 401/403 VAPID refused (e.g. subscribed under another key), 413 too large.
    return DeliveryFailed(True, message)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
