"""Notifier's rules and the shapes its API speaks."""

import base64
import fnmatch
import re
import uuid
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.fields import Matches

# A claimed delivery is a worker's for this long unless its heartbeat renews the claim (every third of
# it): a crashed sender's work is taken over by another worker within this many seconds.
CLAIM_SECONDS = 6.0


class SubscriptionKeys(BaseModel):
    """The browser's keys (RFC 8291 3.2): ``p256dh`` its P-256 public key as an uncompressed point,
    ``auth`` a 16-byte secret, both base64url. Keys that cannot encrypt a push are refused here: once
    registered, every push to them would fail while the browser believed itself subscribed."""

    model_config = ConfigDict(extra="ignore")

    p256dh: str = Field(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+=*$")
    auth: str = Field(min_length=16, max_length=32, pattern=r"^[A-Za-z0-9_-]+=*$")

    @field_validator("p256dh")
    @classmethod
    def _a_point_on_p256(cls, value: str) -> str:
        try:
            raw = _b64url_decode(value)
            if len(raw) != 65 or raw[0] != 4:
                raise ValueError("not an uncompressed point")
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError as exc:
            raise ValueError("not a P-256 public key (65 bytes, an uncompressed point on the curve)") from exc
        return value

    @field_validator("auth")
    @classmethod
    def _sixteen_bytes(cls, value: str) -> str:
        try:
            length = len(_b64url_decode(value))
        except ValueError:  # binascii.Error: a length base64 cannot have
            length = -1
        if length != 16:
            raise ValueError("the auth secret is 16 bytes (RFC 8291 3.2)")
        return value


def _b64url_decode(text: str) -> bytes:
    stripped = text.rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


# RFC 3986 characters only; the authority is a host name (no user info, no IP literal) and a port.
# Plain http only to loopback, where test and local push services run. `endpoint_problem` then checks
# the host against the allowed ones, which depend on the deployment and so are not in the schema.
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_HOST = r"(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+"
_LOOPBACK = r"(?:127\.0\.0\.1|[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]|\[::1\])"
PUSH_ENDPOINT = (
    rf"^(?:[Hh][Tt][Tt][Pp][Ss]://{_HOST}|[Hh][Tt][Tt][Pp]://{_LOOPBACK})(?::[0-9]*)?"
    rf"(?:/{_PCHAR}*)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?$"
)


class PushSubscription(BaseModel):
    """The browser's PushSubscription.toJSON(), as is."""

    model_config = ConfigDict(extra="ignore")

    endpoint: Annotated[str, Matches(PUSH_ENDPOINT, "not an https URL of a push service")] = Field(
        max_length=1024, json_schema_extra={"format": "uri"}
    )
    keys: SubscriptionKeys


# What sends to a device: a browser's Web Push subscription, an Android app's Firebase Cloud Messaging
# registration token, an iPhone app's Apple Push Notification service device token.
DeviceKind = Literal["webpush", "fcm", "apns"]
# FCM registration tokens are opaque (today about 160 characters of base64url with a colon); Google
# documents no length, so any plausible one is taken and FCM's own answer (UNREGISTERED,
# INVALID_ARGUMENT) removes a bad one. APNs device tokens are hex: 32 bytes today, Apple says they may grow.
FCM_TOKEN = r"^[A-Za-z0-9_:-]+$"
APNS_TOKEN = r"^(?:[0-9A-Fa-f]{2}){32,100}$"
_TOKEN_SHAPES = {"fcm": FCM_TOKEN, "apns": APNS_TOKEN}


class RegisterDevice(BaseModel):
    """``{"subscription": ...}`` (a browser; ``kind`` "webpush" may be left out), or ``{"kind": "fcm"
    | "apns", "token": ...}`` (the app's token from FirebaseMessaging.getToken() or from
    application(_:didRegisterForRemoteNotificationsWithDeviceToken:) as hex)."""

    model_config = ConfigDict(extra="forbid")

    kind: DeviceKind = "webpush"
    subscription: PushSubscription | None = None
    token: str | None = Field(default=None, min_length=32, max_length=4096, pattern=r"^[A-Za-z0-9_:-]+$")

    def shape_problem(self) -> tuple[str, str] | None:
        """(field, problem) when the fields do not fit the kind, else None."""
        if self.kind == "webpush":
            if self.token is not None:
                return "token", "a Web Push device is given by its subscription, not a token"
            if self.subscription is None:
                return "subscription", "required for a Web Push device"
            return None
        if self.subscription is not None:
            return "subscription", f"an {self.kind} device is given by its token"
        if self.token is None:
            return "token", f"required for an {self.kind} device"
        if not re.fullmatch(_TOKEN_SHAPES[self.kind], self.token):
            what = (
                "an APNs device token is 64 or more hex digits" if self.kind == "apns" else "not an FCM token"
            )
            return "token", what
        return None


class DeviceView(BaseModel):
    device_id: uuid.UUID
    kind: DeviceKind
    # Web Push only: the push service's host (the endpoint itself is a capability and is never shown).
    endpoint_host: str | None
    created_at: datetime
    # True when this registration moved the device from another account (an FCM or APNs token proves
    # the device: the app on it registered again after another person logged in there).
    moved_from_another_account: bool = False


class DeviceList(BaseModel):
    devices: list[DeviceView]


class VapidKey(BaseModel):
    application_server_key: str


def endpoint_problem(endpoint: str, allowed_hosts: list[str]) -> str | None:
    """Why a push endpoint is refused, or None: only known push services, over HTTPS (or loopback)."""
    try:
        parts = urlsplit(endpoint)
    except ValueError:  # e.g. brackets around something that is not an IPv6 address
        return "not a push service URL"
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        return "not a push service URL"
    if not any(fnmatch.fnmatch(host, pattern) for pattern in allowed_hosts):
        return f"{host} is not a known push service"
    if parts.scheme != "https" and (parts.scheme != "http" or host not in ("127.0.0.1", "localhost", "::1")):
        return "push endpoints must use https"
    return None


def backoff_seconds(attempts: int, retry_after: float | None, cap: float = 3600.0) -> float:
    """Growing pause between tries (5 s doubling up to ``cap`` seconds), or what the remote side asked
    for (at most an hour)."""
    if retry_after is not None:
        return min(max(retry_after, 1.0), 3600.0)
    return float(min(5 * 2 ** min(max(attempts - 1, 0), 30), cap))


# --- Preferences (issue 8): what a person hears, how and when -----------------------------------------

_CLOCK = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"


class CategoryChoice(BaseModel):
    """How one category of message reaches the person. ``channel`` "auto" is the default: push where
    a device is registered, else email. ``timing`` "digest": the emails wait for the school's one
    daily digest (pushes still go at once)."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["auto", "push", "email", "both", "none"]
    timing: Literal["immediate", "digest"] = "immediate"


class QuietHoursWindow(BaseModel):
    """No push from ``starts`` to ``ends`` (HH:MM, the school's time zone; may wrap midnight): a push
    that falls inside is held until ``ends``. Emails are not held. ``ends`` must differ from
    ``starts`` (422): 00:00-00:00 could mean all day or never; for no quiet hours send null, for no
    pushes at all choose a channel without push. On a day the clocks skip or repeat an hour, a time
    in the skipped hour means the first instant after it, a repeated time its first occurrence."""

    model_config = ConfigDict(extra="forbid")

    starts: str = Field(pattern=_CLOCK, examples=["21:00"])
    ends: str = Field(pattern=_CLOCK, examples=["07:00"])

    def problem(self) -> tuple[str, str] | None:
        """(field, problem) when the window is not one a parent can mean, else None."""
        if self.starts == self.ends:
            return "ends", (
                "the same as starts: a window of no length or of a whole day is unclear; "
                "send quiet_hours null for none, or a channel without push for no pushes at all"
            )
        return None


class Preferences(BaseModel):
    """Per category: new posts; sign-ups and conferences; reminders. An urgent post reaches every
    channel at once whatever is chosen here."""

    model_config = ConfigDict(extra="forbid")

    posts: CategoryChoice
    signups: CategoryChoice
    reminders: CategoryChoice
    quiet_hours: QuietHoursWindow | None = None


class UnsubscribeView(BaseModel):
    """What a one-click unsubscribe link does: turn off the emails of ``category`` ("posts",
    "signups", "reminders", or "digest": every category whose emails go into the digest)."""

    category: str
    email_off: bool = Field(description="whether these emails are off now")
    done: bool = Field(description="true when this request turned them off (POST); a GET changes nothing")


# --- Delivery report for operators (issue 8): where the messages about one post stand ------------------


class FailureGroup(BaseModel):
    """Deliveries given up on for one reason on one channel and provider."""

    channel: Literal["email", "push"]
    provider: Literal["smtp", "webpush", "fcm", "apns"]
    reason: str = Field(description="the last error recorded, as the provider or the notifier said it")
    count: int


class ChannelCounts(BaseModel):
    email: int = 0
    push: int = 0


class HeldCounts(BaseModel):
    """Deliveries not to be sent yet, by why: a push in quiet hours, an email for the daily digest, a
    message for a later moment."""

    quiet_hours: int = 0
    digest: int = 0
    scheduled: int = 0


class PostDeliveryReport(BaseModel):
    """The messages about one post, counted now from the deliveries (one email per parent, one push
    per device): who was targeted, what was delivered per channel and per provider, what failed and
    why (grouped), what still waits for its send and what is held."""

    post_id: uuid.UUID
    school_id: uuid.UUID | None
    group_id: uuid.UUID | None
    created_at: datetime = Field(description="when the notifier took the post in")
    urgent: bool
    targeted: int = Field(description="accounts the post is sent to")
    deliveries: int = Field(description="messages made: one email per parent, one push per device")
    delivered: ChannelCounts
    delivered_by_provider: dict[str, int] = Field(description="sent messages by smtp, webpush, fcm, apns")
    failed: int
    failures: list[FailureGroup]
    pending: int = Field(description="waiting for their send or being sent (including retries)")
    retrying: int = Field(description="of the pending: tried and failed at least once, to be tried again")
    held: HeldCounts
