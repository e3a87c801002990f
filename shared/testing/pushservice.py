"""A local Web Push service for tests, strict where the real ones are strict.

It checks what Mozilla's and Google's push services check (RFC 8030 message, RFC 8292 VAPID) and
decrypts the RFC 8291 payload with the subscription's private key, as the browser would:

    service = PushService()
    await service.start()
    subscription = service.subscribe(vapid_public_key)   # what PushManager.subscribe() gives the page
    ...send to subscription...
    [push] = await service.wait_for(1)
    push.json()  # the payload the service worker would see
    await service.stop()
"""

import asyncio
import base64
import binascii
import json
import os
import re
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.testing.arrivals import wait_for_count

__all__ = ["BrowserSubscription", "PushService", "ReceivedPush", "Rejection"]

MAX_BODY_BYTES = 4096
MAX_VAPID_LIFETIME_SECONDS = 24 * 3600
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_URGENCIES = {"very-low", "low", "normal", "high"}
_P256 = ec.SECP256R1()


@dataclass
class BrowserSubscription:
    """The browser's side of a push subscription: its P-256 key pair and auth secret."""

    id: str
    endpoint: str
    application_server_key: str
    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(_P256))
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    def to_json(self) -> dict[str, Any]:
        """As ``PushSubscription.toJSON()`` in the browser: what the page posts to the server."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": _b64url(public), "auth": _b64url(self.auth_secret)},
        }

    def decrypt(self, body: bytes) -> bytes:
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )
        return bytes(plain)


@dataclass(frozen=True)
class ReceivedPush:
    subscription_id: str
    data: bytes  # decrypted payload
    ttl: int
    topic: str | None
    urgency: str | None
    claims: dict[str, Any]  # the verified VAPID JWT claims
    body_size: int  # encrypted bytes on the wire

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Rejection:
    subscription_id: str
    status: int
    reason: str


class PushService:
    """Answers as a push service: 201 on success; 404 unknown and 410 expired subscription; 429 when
    throttled; 400 bad request (no TTL, bad encoding, undecryptable); 401/403 VAPID; 413 too large.

    ``decrypt=False`` (benches) answers as a real push service can, which holds no browser's key:
    the payload is not decrypted (``data`` is empty; its encoding and size are still checked), and a
    VAPID token is verified in full the first time it comes and then known until it expires (a
    sender reuses one token for many pushes, RFC 8292 2)."""

    host = "127.0.0.1"

    def __init__(self, *, decrypt: bool = True) -> None:
        self._decrypt = decrypt
        # VAPID tokens verified so far, with their claims (decrypt=False only).
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}
        self.messages: list[ReceivedPush] = []
        self.rejections: list[Rejection] = []
        self._subscriptions: dict[str, BrowserSubscription] = {}
        self._gone: set[str] = set()
        self._throttled: dict[str, int] = {}
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("PushService is not started")
        return self._base_url

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{subscription_id}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._base_url = f"http://{self.host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def subscribe(self, application_server_key: str) -> dict[str, Any]:
        """Create a subscription as ``PushManager.subscribe({applicationServerKey})`` would; only pushes
        signed with that VAPID key will be accepted for it."""
        subscription_id = _b64url(os.urandom(12))
        browser = BrowserSubscription(
            id=subscription_id,
            endpoint=f"{self.base_url}/push/{subscription_id}",
            application_server_key=application_server_key,
        )
        self._subscriptions[subscription_id] = browser
        return browser.to_json()

    def browser(self, subscription: dict[str, Any] | str) -> BrowserSubscription:
        return self._subscriptions[self._id_of(subscription)]

    def expire(self, subscription: dict[str, Any] | str) -> None:
        """From now on the subscription answers 410 Gone, as when the user revoked permission."""
        self._gone.add(self._id_of(subscription))

    def throttle_once(self, subscription: dict[str, Any] | str, retry_after: int = 1) -> None:
        """The next push to the subscription gets 429 Too Many Requests with Retry-After."""
        self._throttled[self._id_of(subscription)] = retry_after

    def pushes_for(self, subscription: dict[str, Any] | str) -> list[ReceivedPush]:
        subscription_id = self._id_of(subscription)
        return [m for m in self.messages if m.subscription_id == subscription_id]

    # A timeout parameter (ASYNC109) because every test wants the same short wait written once.
    async def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedPush]:  # noqa: ASYNC109
        """The first ``count`` messages, once that many have arrived; TimeoutError otherwise."""
        return await wait_for_count(self.messages, self._arrived, count, timeout, "push(es)", self.rejections)

    def _id_of(self, subscription: dict[str, Any] | str) -> str:
        endpoint = subscription["endpoint"] if isinstance(subscription, dict) else subscription
        return str(endpoint).rstrip("/").rsplit("/", 1)[-1]

    async def _receive(self, request: web.Request) -> web.Response:
        subscription_id = request.match_info["subscription_id"]
        try:
            push = await self._accept(subscription_id, request)
        except _Refused as refused:
            self.rejections.append(Rejection(subscription_id, refused.status, refused.reason))
            return web.Response(status=refused.status, text=refused.reason, headers=refused.headers)
        self.messages.append(push)
        self._arrived.set()
        return web.Response(status=201, headers={"Location": f"{self.base_url}/message/{len(self.messages)}"})

    async def _accept(self, subscription_id: str, request: web.Request) -> ReceivedPush:
        if subscription_id in self._gone:
            raise _Refused(410, "subscription expired or unsubscribed")
        browser = self._subscriptions.get(subscription_id)
        if browser is None:
            raise _Refused(404, "no such subscription")
        retry_after = self._throttled.pop(subscription_id, None)
        if retry_after is not None:
            raise _Refused(429, "too many messages", {"Retry-After": str(retry_after)})

        claims = self._verify_vapid(request.headers.get("Authorization", ""), browser)

        ttl_header = request.headers.get("TTL")
        if ttl_header is None or not ttl_header.isdigit():
            raise _Refused(400, "TTL header with a non-negative integer is required")
        topic = request.headers.get("Topic")
        if topic is not None and not _TOPIC.fullmatch(topic):
            raise _Refused(400, "Topic must be at most 32 base64url characters")
        urgency = request.headers.get("Urgency")
        if urgency is not None and urgency not in _URGENCIES:
            raise _Refused(400, f"unknown Urgency {urgency!r}")

        body = await request.read()
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, f"payload exceeds {MAX_BODY_BYTES} bytes")
        data = b""
        if body:
            if request.headers.get("Content-Encoding") != "aes128gcm":
                raise _Refused(400, "Content-Encoding must be aes128gcm")
            if not self._decrypt:
                return ReceivedPush(subscription_id, data, int(ttl_header), topic, urgency, claims, len(body))
            try:
                data = browser.decrypt(body)
            except Exception as exc:  # http_ece raises assorted errors for a bad record
                raise _Refused(400, f"cannot decrypt payload: {exc!r}") from exc
        return ReceivedPush(subscription_id, data, int(ttl_header), topic, urgency, claims, len(body))

    def _verify_vapid(self, authorization: str, browser: BrowserSubscription) -> dict[str, Any]:
        """RFC 8292: ``vapid t=<JWT>, k=<public key>``; k must be the subscription's
        applicationServerKey, the JWT signed by it, for this origin, and expire within 24 hours."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, "Authorization: vapid t=..., k=... is required")
        try:
            parts = dict(p.strip().split("=", 1) for p in params.split(","))
            token, key = parts["t"], parts["k"]
        except (ValueError, KeyError):
            raise _Refused(401, "malformed vapid authorization") from None
        if key != browser.application_server_key:
            raise _Refused(403, "VAPID key does not match the subscription's applicationServerKey")
        known = self._verified.get((token, key))
        if known is not None and known["exp"] > time.time():
            return known
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(_P256, _b64url_decode(key))
            claims: dict[str, Any] = jwt.decode(
                token,
                key=public_key,
                algorithms=["ES256"],
                audience=self.base_url,
                options={"require": ["aud", "exp", "sub"]},
            )
        except (ValueError, binascii.Error, jwt.PyJWTError) as exc:
            raise _Refused(403, f"invalid VAPID token: {exc}") from None
        if claims["exp"] > time.time() + MAX_VAPID_LIFETIME_SECONDS:
            raise _Refused(403, "VAPID token expires more than 24 hours from now")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise _Refused(403, "VAPID sub must be a mailto: or https: URL")
        if not self._decrypt:
            self._verified[(token, key)] = claims
        return claims


class _Refused(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
