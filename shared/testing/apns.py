"""A local Apple Push Notification service for tests: HTTP/2 over TLS (the h2 library), strict where
Apple is strict.

It negotiates h2 by ALPN under a certificate of its own CA (``ca_file`` for the client to trust),
verifies the provider token (an ES256 JWT signed by the team's .p8 key, ``kid`` the key id, ``iss``
the team, ``iat`` within the hour), and checks the request as Apple documents it: ``POST
/3/device/<hex token>``, ``apns-topic`` the app's bundle id, ``apns-push-type``, ``apns-priority``,
``apns-collapse-id`` of at most 64 bytes, a JSON body with ``aps`` of at most 4 KB. Answers 200 with
the ``apns-id`` and no body, or the status and ``{"reason": ...}``: 410 Unregistered, 400
BadDeviceToken, 429 TooManyRequests, 403 InvalidProviderToken/ExpiredProviderToken, ...

    apns = ApnsService()
    await apns.start()
    settings: APNS_KEY=apns.key_pem, APNS_KEY_ID=apns.key_id, APNS_TEAM_ID=apns.team_id,
              APNS_TOPIC=apns.topic, APNS_HOST=apns.host, APNS_PORT=apns.port, APNS_CA_FILE=apns.ca_file
    token = apns.register()             # what the iPhone app gets from didRegisterForRemoteNotifications
    [received] = await apns.wait_for(1)
    await apns.stop()
"""

import asyncio
import datetime
import ipaddress
import json
import os
import re
import secrets
import ssl
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.testing.arrivals import wait_for_count

__all__ = ["ApnsService", "ReceivedApns"]

MAX_PAYLOAD_BYTES = 4096
_PUSH_TYPES = {
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
}
_TOKEN = re.compile(r"[0-9a-f]{64,200}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


@dataclass(frozen=True)
class ReceivedApns:
    token: str
    headers: dict[str, str]  # the request's headers (pseudo-headers included)
    payload: dict[str, Any]
    claims: dict[str, Any]  # the verified provider token's claims

    @property
    def collapse_id(self) -> str | None:
        return self.headers.get("apns-collapse-id")


class ApnsService:
    host = "127.0.0.1"

    def __init__(self, topic: str = "nl.klaspost.app") -> None:
        self.topic = topic
        self.team_id = secrets.token_hex(5).upper()
        self.key_id = secrets.token_hex(5).upper()
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.key_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.messages: list[ReceivedApns] = []
        self.rejections: list[tuple[str, int, str]] = []  # (token, status, reason)
        self.connections = 0  # TLS connections accepted (h2 negotiated)
        self._devices: set[str] = set()
        self._unregistered: set[str] = set()
        self._throttled: set[str] = set()
        self._arrived = asyncio.Event()
        self._dir = Path(tempfile.mkdtemp(prefix="apns-"))
        self.ca_file = str(self._dir / "ca.pem")
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert, key = self._certificates()
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["h2"])
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self), self.host, 0, ssl=context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def register(self) -> str:
        """A new device token (32 bytes, as hex) for the app."""
        token = os.urandom(32).hex()
        self._devices.add(token)
        return token

    def unregister(self, token: str) -> None:
        """From now on the token answers 410 Unregistered, as after the app was deleted."""
        self._unregistered.add(token)

    def throttle_once(self, token: str) -> None:
        """The next push to the token gets 429 TooManyRequests."""
        self._throttled.add(token)

    def messages_for(self, token: str) -> list[ReceivedApns]:
        return [m for m in self.messages if m.token == token]

    async def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedApns]:  # noqa: ASYNC109
        return await wait_for_count(
            self.messages, self._arrived, count, timeout, "APNs push(es)", self.rejections
        )

    def decide(self, headers: dict[str, str], body: bytes) -> tuple[int, str | None]:
        """(status, reason) for one request, as APNs answers it; records what it accepts."""
        path = headers.get(":path", "")
        token = path.removeprefix("/3/device/")
        refused = self._refusal(headers, token, body)
        if refused is not None:
            self.rejections.append((token, *refused))
            return refused
        self.messages.append(ReceivedApns(token, headers, json.loads(body), self._claims(headers)))
        self._arrived.set()
        return 200, None

    def _refusal(self, headers: dict[str, str], token: str, body: bytes) -> tuple[int, str] | None:
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed"
        if headers.get(":scheme") != "https" or not headers.get(":path", "").startswith("/3/device/"):
            return 404, "BadPath"
        authorization = headers.get("authorization")
        if not authorization:
            return 403, "MissingProviderToken"
        try:
            claims = self._claims(headers)
        except jwt.ExpiredSignatureError:
            return 403, "ExpiredProviderToken"
        except (jwt.PyJWTError, ValueError):
            return 403, "InvalidProviderToken"
        if claims["iat"] < time.time() - 3600:
            return 403, "ExpiredProviderToken"
        if "apns-id" in headers and not _UUID.fullmatch(headers["apns-id"]):
            return 400, "BadMessageId"
        if headers.get("apns-topic") != self.topic:
            return 400, "TopicDisallowed" if "apns-topic" in headers else "MissingTopic"
        if headers.get("apns-push-type") not in _PUSH_TYPES:
            return 400, "InvalidPushType"
        if headers.get("apns-priority", "10") not in ("1", "5", "10"):
            return 400, "BadPriority"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId"
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate"
        if len(body) > MAX_PAYLOAD_BYTES:
            return 413, "PayloadTooLarge"
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "BadPayload"
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return 400, "PayloadEmpty"
        if token in self._unregistered:
            return 410, "Unregistered"
        if not _TOKEN.fullmatch(token) or token not in self._devices:
            return 400, "BadDeviceToken"
        if token in self._throttled:
            self._throttled.discard(token)
            return 429, "TooManyRequests"
        return None

    def _claims(self, headers: dict[str, str]) -> dict[str, Any]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise ValueError("not a bearer token")
        if jwt.get_unverified_header(token).get("kid") != self.key_id:
            raise ValueError("unknown key id")
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["ES256"],
            issuer=self.team_id,
            options={"require": ["iss", "iat"]},
        )
        return claims

    def _certificates(self) -> tuple[str, str]:
        """A CA (written to ca_file) and a server certificate it signed, for 127.0.0.1 and localhost."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Klaspost test APNs CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(self.host))]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        Path(self.ca_file).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert, key = self._dir / "server.pem", self._dir / "server.key"
        cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            leaf_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(cert), str(key)


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/2 only (ALPN h2), each stream one request."""

    def __init__(self, service: ApnsService) -> None:
        self._service = service
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            transport.close()  # APNs speaks HTTP/2 only
            return
        self._service.connections += 1
        self._conn.initiate_connection()
        transport.write(self._conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._transport.write(self._conn.data_to_send())
            self._transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                headers = {str(k): str(v) for k, v in event.headers}
                self._streams[event.stream_id] = (headers, bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self._streams[event.stream_id][1].extend(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self._streams.pop(event.stream_id)
                self._answer(event.stream_id, headers, bytes(body))
        self._transport.write(self._conn.data_to_send())

    def _answer(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        status, reason = self._service.decide(headers, body)
        response = [(":status", str(status)), ("apns-id", apns_id)]
        if reason is None:
            self._conn.send_headers(stream_id, response, end_stream=True)
            return
        answer: dict[str, Any] = {"reason": reason}
        if status == 410:
            answer["timestamp"] = int(time.time() * 1000)
        data = json.dumps(answer).encode()
        self._conn.send_headers(stream_id, [*response, ("content-type", "application/json")])
        self._conn.send_data(stream_id, data, end_stream=True)
