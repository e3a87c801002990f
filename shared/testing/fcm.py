"""A local Firebase Cloud Messaging (HTTP v1) for tests, strict where Google is strict.

It plays both of Google's parts: the OAuth2 token endpoint (a JWT-bearer grant whose RS256 assertion
must be signed by the service account's key, for the messaging scope, to this endpoint, for at most
an hour) and ``POST /v1/projects/{project}/messages:send`` (a live access token, a known project, a
message of the documented shape to a token the "app" registered). It answers as FCM does:
404 UNREGISTERED, 400 INVALID_ARGUMENT, 429 QUOTA_EXCEEDED with Retry-After, 401 UNAUTHENTICATED.

    fcm = FcmService()
    await fcm.start()
    settings: FCM_CREDENTIALS=json.dumps(fcm.service_account()), FCM_BASE_URL=fcm.base_url
    token = fcm.register()              # what FirebaseMessaging.getToken() gives the app
    [received] = await fcm.wait_for(1)
    await fcm.stop()
"""

import asyncio
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.testing.arrivals import wait_for_count

__all__ = ["FcmService", "ReceivedFcm"]

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MESSAGE_FIELDS = {
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "token",
    "topic",
    "condition",
}
_ANDROID_FIELDS = {
    "collapse_key",
    "priority",
    "ttl",
    "restricted_package_name",
    "data",
    "notification",
    "fcm_options",
    "direct_boot_ok",
}
_DURATION = re.compile(r"[0-9]{1,10}(\.[0-9]{1,9})?s")


@dataclass(frozen=True)
class ReceivedFcm:
    token: str
    message: dict[str, Any]  # the ``message`` object as sent
    access_token: str


class FcmService:
    host = "127.0.0.1"

    def __init__(self, project_id: str = "klaspost-test", token_lifetime: int = 3600) -> None:
        self.project_id = project_id
        self.client_email = f"notifier@{project_id}.iam.gserviceaccount.com"
        self.private_key_id = secrets.token_hex(20)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._token_lifetime = token_lifetime
        self.messages: list[ReceivedFcm] = []
        self.rejections: list[tuple[str, int, str]] = []  # (token, status, error code)
        self.tokens_issued = 0
        self.assertions: list[dict[str, Any]] = []  # verified claims of each token request
        self._access: dict[str, float] = {}  # access token -> expiry (time.time())
        self._devices: set[str] = set()
        self._unregistered: set[str] = set()
        self._throttled: dict[str, int] = {}
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FcmService is not started")
        return self._base_url

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def service_account(self) -> dict[str, str]:
        """The service account key as the Firebase console downloads it, pointing at this server."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "token_uri": self.token_uri,
        }

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self._base_url = f"http://{self.host}:{self._runner.addresses[0][1]}"

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

    def register(self) -> str:
        """A new registration token, as the app gets one (an instance id, a colon, base64url)."""
        token = f"{secrets.token_urlsafe(16)}:APA91b{secrets.token_urlsafe(105)}"
        self._devices.add(token)
        return token

    def unregister(self, token: str) -> None:
        """From now on the token answers 404 UNREGISTERED, as after the app was uninstalled."""
        self._unregistered.add(token)

    def throttle_once(self, token: str, retry_after: int = 1) -> None:
        """The next send to the token gets 429 QUOTA_EXCEEDED with Retry-After."""
        self._throttled[token] = retry_after

    def expire_access_tokens(self) -> None:
        """Every access token handed out so far is refused from now on (401)."""
        self._access.clear()

    def messages_for(self, token: str) -> list[ReceivedFcm]:
        return [m for m in self.messages if m.token == token]

    async def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedFcm]:  # noqa: ASYNC109
        return await wait_for_count(
            self.messages, self._arrived, count, timeout, "FCM message(s)", self.rejections
        )

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        assertion = str(form.get("assertion", ""))
        try:
            header = jwt.get_unverified_header(assertion)
            claims: dict[str, Any] = jwt.decode(
                assertion,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=self.client_email,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT Signature or claims: {exc}")
        if header.get("kid") not in (None, self.private_key_id):
            return _oauth_error("invalid_grant", "Invalid key id")
        now = time.time()
        if claims["exp"] - claims["iat"] > 3600 or claims["iat"] > now + 60:
            return _oauth_error(
                "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)"
            )
        if SCOPE not in str(claims["scope"]).split() and "cloud-platform" not in str(claims["scope"]):
            return _oauth_error("invalid_scope", "The messaging scope is required")
        self.assertions.append(claims)
        self.tokens_issued += 1
        access = f"ya29.{secrets.token_urlsafe(32)}"
        self._access[access] = now + self._token_lifetime
        return web.json_response(
            {"access_token": access, "expires_in": self._token_lifetime, "token_type": "Bearer"}
        )

    async def _send(self, request: web.Request) -> web.Response:
        scheme, _, access = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or self._access.get(access, 0) < time.time():
            return _error(401, "UNAUTHENTICATED", None, "Request had invalid authentication credentials.")
        if request.match_info["project"] != self.project_id:
            return _error(403, "PERMISSION_DENIED", None, "Permission denied on the project")
        try:
            body = await request.json()
            message = body["message"]
            problem = _shape_problem(body, message)
        except (ValueError, KeyError, TypeError):
            problem = "Invalid JSON payload received."
        if problem:
            return _error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", problem)
        token = str(message.get("token", ""))
        if token in self._unregistered:
            self.rejections.append((token, 404, "UNREGISTERED"))
            return _error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
        if token not in self._devices:
            self.rejections.append((token, 400, "INVALID_ARGUMENT"))
            return _error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
            )
        retry_after = self._throttled.pop(token, None)
        if retry_after is not None:
            self.rejections.append((token, 429, "QUOTA_EXCEEDED"))
            return _error(
                429,
                "RESOURCE_EXHAUSTED",
                "QUOTA_EXCEEDED",
                "Quota exceeded.",
                {"Retry-After": str(retry_after)},
            )
        if body.get("validate_only"):
            return web.json_response({"name": f"projects/{self.project_id}/messages/fake_message_id"})
        self.messages.append(ReceivedFcm(token, message, access))
        self._arrived.set()
        return web.json_response({"name": f"projects/{self.project_id}/messages/0:{os.urandom(8).hex()}"})


def _shape_problem(body: dict[str, Any], message: dict[str, Any]) -> str | None:
    """What FCM would refuse in the request's shape, or None."""
    if set(body) - {"message", "validate_only"}:
        return (
            f"Invalid JSON payload received. Unknown name {sorted(set(body) - {'message', 'validate_only'})}"
        )
    if not isinstance(message, dict):
        return "message must be an object"
    unknown = set(message) - _MESSAGE_FIELDS
    if unknown:
        return f"Invalid JSON payload received. Unknown name {sorted(unknown)} at 'message'"
    if sum(k in message for k in ("token", "topic", "condition")) != 1:
        return "Exactly one of token, topic or condition must be given"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return "Invalid value at 'message.data': data values must be strings"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or set(notification) - {"title", "body", "image"}:
        return "Invalid JSON payload received at 'message.notification'"
    android = message.get("android", {})
    if not isinstance(android, dict) or set(android) - _ANDROID_FIELDS:
        return "Invalid JSON payload received at 'message.android'"
    if "ttl" in android and not _DURATION.fullmatch(str(android["ttl"])):
        return "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)"
    if android.get("priority", "normal") not in ("normal", "high"):
        return "Invalid value at 'message.android.priority'"
    return None


def _error(
    status: int, code: str, fcm_code: str | None, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if fcm_code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        ]
    return web.Response(
        status=status, text=json.dumps({"error": error}), content_type="application/json", headers=headers
    )


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)
