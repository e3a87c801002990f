"""Sends to Android apps through Firebase Cloud Messaging's HTTP v1 API.

Authorisation is Google's OAuth2 service-account flow (RFC 7523 JWT-bearer grant): an RS256 JWT
signed with the service account's private key buys an access token for an hour, kept and reused
until shortly before it runs out. Everything goes over one aiohttp session of its own, whose
connections to FCM stay open between sends; at most ``fcm_connections`` sends run at once.
(firebase-admin is not used: it refreshes tokens with blocking requests on the event loop.)

Answers (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode): 404 UNREGISTERED and a
400 INVALID_ARGUMENT about the token, or 403 SENDER_ID_MISMATCH, mean the token is dead or not ours
(the device is removed); 429 QUOTA_EXCEEDED, 500 INTERNAL and 503 UNAVAILABLE are retried after
Retry-After or with back-off; a 401 drops the cached access token and is retried.
"""

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp
import jwt

from notifier.delivery_errors import DeliveryFailed
from notifier.settings import Settings
from notifier.webpush import retry_after_seconds

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
# An access token is renewed this long before Google says it expires (clock skew, slow sends).
_RENEW_BEFORE_SECONDS = 300.0
_ASSERTION_SECONDS = 3600  # the longest lifetime Google accepts for the assertion


def load_service_account(value: str) -> dict[str, Any]:
    """The service account key: ``value`` is its JSON or the path of a file holding it. Needs
    project_id, client_email, private_key (PEM) and, optionally, private_key_id and token_uri."""
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    account: dict[str, Any] = json.loads(text)
    missing = [k for k in ("project_id", "client_email", "private_key") if not account.get(k)]
    if missing:
        raise ValueError(f"FCM_CREDENTIALS lacks {', '.join(missing)}")
    return account


class FcmSender:
    """``async with FcmSender(settings)`` (or ``start()``/``close()``), then ``send()`` per device."""

    def __init__(self, settings: Settings) -> None:
        if settings.fcm_credentials is None:
            raise ValueError("FCM_CREDENTIALS is not set")
        self._account = load_service_account(settings.fcm_credentials.get_secret_value())
        self._token_uri = settings.fcm_token_uri or self._account.get("token_uri") or DEFAULT_TOKEN_URI
        base = settings.fcm_base_url.rstrip("/")
        self._send_url = f"{base}/v1/projects/{self._account['project_id']}/messages:send"
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(settings.fcm_connections)
        self._access_token: str | None = None
        self._expires_at = 0.0  # time.time() the cached access token is renewed at
        self._token_lock = asyncio.Lock()
        self.tokens_fetched = 0

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._settings.fcm_connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._settings.push_timeout_seconds),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def send(self, token: str, payload: Mapping[str, str], collapse_key: str) -> str:
        """Send the notification ``payload`` (title, body, url, tag) to one registration token; the
        collapse key (the delivery's idempotency key) makes a repeat replace the shown one. Returns
        FCM's message name; raises DeliveryFailed."""
        if self._session is None:
            raise RuntimeError("FcmSender.start() was not called")
        body = {"message": fcm_message(token, payload, collapse_key, self._settings.push_ttl_seconds)}
        async with self._slots:
            access_token = await self._token()
            try:
                async with self._session.post(
                    self._send_url, json=body, headers={"Authorization": f"Bearer {access_token}"}
                ) as response:
                    text = await response.text()
                    if response.status == 200:
                        # Accepted: whatever the body says, this send must not be retried.
                        return _message_name(text)
                    failure = _classify(response.status, text, response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise DeliveryFailed(False, f"FCM unreachable: {exc!r}") from exc
        if response.status == 401:
            self._forget(access_token)
        raise failure

    def _forget(self, access_token: str) -> None:
        if self._access_token == access_token:
            self._access_token = None

    async def _token(self) -> str:
        """A valid access token: the cached one, or a new one from the token endpoint (one fetch at a
        time; sends waiting meanwhile take the token it brings)."""
        async with self._token_lock:
            if self._access_token is not None and time.time() < self._expires_at:
                return self._access_token
            assert self._session is not None
            now = int(time.time())
            claims = {
                "iss": self._account["client_email"],
                "scope": SCOPE,
                "aud": self._token_uri,
                "iat": now,
                "exp": now + _ASSERTION_SECONDS,
            }
            headers = (
                {"kid": self._account["private_key_id"]} if self._account.get("private_key_id") else None
            )
            assertion = jwt.encode(claims, self._account["private_key"], algorithm="RS256", headers=headers)
            try:
                async with self._session.post(
                    self._token_uri, data={"grant_type": GRANT_TYPE, "assertion": assertion}
                ) as response:
                    text = await response.text()
                    if response.status != 200:
                        # A refused key is the operator's to fix; the sends wait and are retried.
                        raise DeliveryFailed(
                            False,
                            f"FCM access token refused: {response.status} {' '.join(text.split())[:200]}",
                        )
                    answer = json.loads(text)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                raise DeliveryFailed(False, f"FCM token endpoint failed: {exc!r}") from exc
            self.tokens_fetched += 1
            self._access_token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in", 3600))
            self._expires_at = time.time() + max(lifetime - _RENEW_BEFORE_SECONDS, lifetime / 2)
            return self._access_token


def fcm_message(
    token: str, payload: Mapping[str, str], collapse_key: str, ttl_seconds: int
) -> dict[str, Any]:
    """The HTTP v1 ``message``: a notification the system shows (tag = collapse key, so a repeat
    replaces it), the post's link in data for the app, high priority so it shows at once."""
    return {
        "token": token,
        "notification": {"title": payload["title"], "body": payload["body"]},
        "data": {"url": payload["url"], "tag": collapse_key},
        "android": {
            "collapse_key": collapse_key,
            "priority": "high",
            "ttl": f"{ttl_seconds}s",
            "notification": {"tag": collapse_key},
        },
    }


def _message_name(text: str) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        return ""
    return str(answer.get("name", "")) if isinstance(answer, dict) else ""


def _classify(status: int, text: str, retry_after: str | None) -> DeliveryFailed:
    try:
        error = json.loads(text).get("error", {})
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    details = error.get("details") or []
    code = next(
        (d.get("errorCode") for d in details if isinstance(d, dict) and "FcmError" in str(d.get("@type"))),
        None,
    ) or str(error.get("status") or status)
    message = " ".join(str(error.get("message") or text).split())[:300]
    reason = f"FCM {status} {code}: {message}"
    about_token = "token" in message.lower() or any(
        isinstance(d, dict)
        and any(
            "token" in str(v.get("field", "")) for v in d.get("fieldViolations", []) if isinstance(v, dict)
        )
        for d in details
    )
    if code == "UNREGISTERED" or status == 404 or code == "SENDER_ID_MISMATCH":
        return DeliveryFailed(True, reason, gone=True)
    if code == "INVALID_ARGUMENT" and about_token:
        return DeliveryFailed(True, reason, gone=True)
    if status in (401, 408, 429) or status >= 500:
        return DeliveryFailed(False, reason, retry_after=retry_after_seconds(retry_after))
    return DeliveryFailed(True, reason)
