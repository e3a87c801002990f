"""Notifier's settings: mail and push delivery."""

import ipaddress
from email.errors import HeaderParseError
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from typing import Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import idna
from pydantic import Field, SecretStr, field_validator, model_validator
from yarl import URL

from notifier.domain import CLAIM_SECONDS
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8084
    token_audience: str = "klaspost-notifier"
    public_base_url: str = "http://127.0.0.1:8080"
    # The operator's key for GET /reports/posts/{post_id} (X-Operator-Key); unset: those routes answer 401.
    operator_api_key: SecretStr | None = None
    # Where this service's API is reached from outside: one-click unsubscribe links in mails point here.
    public_api_url: str = "http://127.0.0.1:8084"
    # How often held messages (quiet hours, scheduled reminders) are released and digests made.
    schedule_seconds: float = Field(default=30.0, gt=0)
    # Dates in mails are shown in the school's time zone; this one when the school is not known (yet).
    default_time_zone: str = "Europe/Amsterdam"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 15.0
    # Implicit TLS from the first byte (port 465, RFC 8314); smtp_starttls upgrades a plain connection.
    smtp_implicit_tls: bool = False
    # The connection pool to the relay: connections open at once, messages per connection before a
    # fresh one (relays cap it, often at 100), and seconds an unused one is kept. More connections
    # than delivery_email_concurrency: the envelopes of the mails waiting for a send slot are opened
    # on the others (mailer.Mailer), so 8 connections keep 4 mails in DATA and 4 more ready.
    smtp_max_connections: int = Field(default=8, ge=1)
    smtp_messages_per_connection: int = Field(default=100, ge=1)
    smtp_idle_seconds: float = Field(default=30.0, gt=0)
    mail_from: str = "Klaspost <noreply@klaspost.local>"
    # VAPID key pair for Web Push: base64url of the raw P-256 private scalar and the uncompressed public point.
    vapid_private_key: SecretStr | None = None
    vapid_public_key: str | None = None
    # The push services' contact for this server (RFC 8292 "sub"): a mailto: or https: URL on a real
    # domain. No default: Apple refuses a reserved one (403 BadJwtToken), so iPhones would get nothing.
    vapid_subject: str | None = None
    push_ttl_seconds: int = 86_400
    push_timeout_seconds: float = 10.0
    # Sends to one push service at once; the app's HTTP session keeps their connections alive.
    push_connections_per_host: int = Field(default=8, ge=1)
    # Firebase Cloud Messaging (Android) over HTTP v1: the service account's JSON key (downloaded from
    # the Firebase console), given as a file path or as the JSON itself. Unset: FCM devices are refused.
    fcm_credentials: SecretStr | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    # Where the OAuth2 access token is fetched (JWT-bearer grant); unset: the key's own token_uri.
    fcm_token_uri: str | None = None
    # Sends to FCM at once, over that many kept-alive connections.
    fcm_connections: int = Field(default=8, ge=1)
    # Apple Push Notification service (iPhone apps) over HTTP/2 with a provider token: the .p8 signing
    # key (PEM text or a file path), its key id, the developer team id and the app's bundle id (topic).
    # Unset: APNs devices are refused.
    apns_key: SecretStr | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = None
    # Apple's development server (apps signed for development) instead of production.
    apns_use_sandbox: bool = False
    # Another server than Apple's (tests); unset: api.push.apple.com or api.sandbox.push.apple.com.
    apns_host: str | None = None
    apns_port: int = 443
    # A CA bundle to trust instead of the system's (tests: the local stand-in's own CA).
    apns_ca_file: str | None = None
    # HTTP/2 connections kept open to APNs (each carries many sends at once).
    apns_connections: int = Field(default=2, ge=1)
    # Attempts a delivery gets before it is given up on (5 s doubling: about 10.6 minutes). Email
    # is the exception: a relay that is down, times out or answers 4xx is the server's trouble, not the
    # message's, so like an MTA the notifier keeps trying (back-off capped at
    # delivery_email_max_backoff_seconds) until delivery_email_retry_hours have passed since the mail
    # was due. A permanent refusal (5xx for the address, a local part needing SMTPUTF8) fails at once.
    delivery_max_attempts: int = 8
    delivery_email_retry_hours: float = Field(default=24.0, ge=0)  # 0: attempts alone decide
    delivery_email_max_backoff_seconds: float = Field(default=600.0, ge=5)
    # Sends in flight at once, per provider. A crash can repeat at most this many (each with the same
    # Message-ID or push Topic): the outcome of each send is stored before its slot takes the next.
    delivery_email_concurrency: int = Field(default=4, ge=1)
    delivery_push_concurrency: int = Field(default=8, ge=1)  # Web Push
    delivery_fcm_concurrency: int = Field(default=8, ge=1)
    delivery_apns_concurrency: int = Field(default=8, ge=1)
    # Pushes in flight at once over Web Push, FCM and APNs together: the most pushes a crash (kill -9)
    # can repeat, against throughput (each push waits for one of these). The per-provider limits
    # above still hold, so a slow provider holds only its own share.
    delivery_push_in_flight: int = Field(default=8, ge=1)
    # Pushes in flight at once to one push service (a Web Push origin such as Mozilla's or Apple's
    # push host; FCM; APNs): kept below delivery_push_in_flight and delivery_push_concurrency (at
    # most one less than either), so that a push service that takes requests and never answers leaves
    # the others slots. A fan-out to browsers all at one push service sends this many at once.
    delivery_push_service_concurrency: int = Field(default=6, ge=1)
    # How long a claim on a delivery lasts without renewal: a heartbeat renews it every third of this
    # while the worker lives, so another worker takes over a crashed one's deliveries within this.
    delivery_lease_seconds: float = Field(default=CLAIM_SECONDS, ge=1.0)
    # On SIGTERM: stop claiming, and give the sends in flight this long to finish and be recorded.
    delivery_stop_grace_seconds: float = Field(default=5.0, ge=0)
    # How often delivery figures of recent posts are counted and reported to posts (DeliveryReport).
    delivery_report_seconds: float = 5.0
    # Push devices one person may have: one more replaces their least recently registered one
    # (device_limits.py says why), and registrations one person may make in an hour (then 429).
    devices_per_person: int = Field(default=20, ge=1)
    device_registrations_per_hour: int = Field(default=30, ge=1)
    # Hosts a browser's push subscription may point at. The notifier POSTs to whatever endpoint a
    # subscription names, so without this list a caller could aim it at internal addresses.
    push_allowed_hosts: list[str] = [
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "web.push.apple.com",
        "*.notify.windows.com",
    ]

    @field_validator("mail_from")
    @classmethod
    def _one_sender(cls, value: str) -> str:
        return sender_mailbox(value)

    @field_validator("default_time_zone")
    @classmethod
    def _a_known_zone(cls, value: str) -> str:
        """An IANA name the zone database knows: a misspelt one (``Europe/Amsterdm``) was read as UTC
        everywhere it was used (dates in mails, quiet hours, digest times)."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"DEFAULT_TIME_ZONE is not a known time zone (an IANA name such as Europe/Amsterdam): {value!r}"
            ) from exc
        return value

    @field_validator("public_api_url")
    @classmethod
    def _ascii_url(cls, value: str) -> str:
        """In ASCII as yarl writes it (an international host as its A-label, RFC 5891; other text
        percent-encoded, RFC 3986 3.3): the unsubscribe links go into List-Unsubscribe as they are
        (RFC 2369, never encoded), and a mail whose headers are not ASCII could not be sent at all."""
        return str(URL(value))

    @model_validator(mode="after")
    def _one_kind_of_smtp_tls(self) -> Self:
        """STARTTLS upgrades a plain connection; implicit TLS has none to upgrade."""
        if self.smtp_starttls and self.smtp_implicit_tls:
            raise ValueError("set SMTP_STARTTLS (port 587) or SMTP_IMPLICIT_TLS (port 465), not both")
        return self

    @field_validator(
        "fcm_credentials",
        "fcm_token_uri",
        "apns_key",
        "apns_key_id",
        "apns_team_id",
        "apns_topic",
        "apns_host",
        "apns_ca_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (compose's ``${FCM_CREDENTIALS:-}``) leaves the channel off."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _apns_all_or_nothing(self) -> Self:
        """A provider token needs the key, its id, the team and the topic: half of them is a mistake."""
        given = {
            "APNS_KEY": self.apns_key is not None,
            "APNS_KEY_ID": bool(self.apns_key_id),
            "APNS_TEAM_ID": bool(self.apns_team_id),
            "APNS_TOPIC": bool(self.apns_topic),
        }
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(name for name, ok in given.items() if not ok)
            raise ValueError(
                f"APNs needs APNS_KEY, APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC; missing {missing}"
            )
        return self

    def unconfigured_push(self, kind: str) -> str | None:
        """Why this server cannot send to a device of kind ("webpush", "fcm", "apns"), or None."""
        if kind == "webpush" and self.vapid_private_key is None:
            return "Web Push is not configured on this server (VAPID keys)"
        if kind == "fcm" and self.fcm_credentials is None:
            return "Android push (FCM) is not configured on this server"
        if kind == "apns" and self.apns_key is None:
            return "iPhone push (APNs) is not configured on this server"
        return None

    def mail_from_problem(self) -> str | None:
        """Why MAIL_FROM cannot be the sender of mails through SMTP_HOST, or None: a local or reserved
        domain (the default's ``klaspost.local``; RFC 2606, RFC 6761/6762), as VAPID_SUBJECT's
        (issue 8 case 6), when SMTP_HOST is a real relay. Relays and the receiving servers refuse or
        bounce mail from a domain nobody can look up (no MX or A record for bounces, no SPF or DMARC
        to pass), so parents get nothing. Through a relay on this machine or network (the test sink,
        compose's Mailpit) it is no problem: those keep every mail."""
        relay = f"[{self.smtp_host}]" if ":" in self.smtp_host else self.smtp_host  # an IPv6 address
        if public_url_problem(f"smtp://{relay}") is not None:
            return None  # a local catcher, not a relay to the internet
        domain = Address(addr_spec=_addr_spec(self.mail_from)).domain.lower().rstrip(".")
        if _is_ip(domain) or "." not in domain or _reserved(domain):
            return (
                f"names a local or reserved domain ({domain}) that a mail relay ({self.smtp_host}) and "
                f"the parents' mail servers refuse: {self.mail_from!r}"
            )
        return None

    @model_validator(mode="after")
    def _vapid_subject_reaches_someone(self) -> Self:
        """With Web Push configured, VAPID_SUBJECT must be set and name a real contact."""
        if self.vapid_private_key is not None:
            problem = vapid_subject_problem(self.vapid_subject)
            if problem:
                raise ValueError(f"VAPID_SUBJECT {problem}")
        return self


_ADDRESS_HEADERS = HeaderRegistry()


def sender_mailbox(mail_from: str) -> str:
    """MAIL_FROM as it goes into every mail: one mailbox (RFC 5322 3.6.2: one From address), with an
    international domain in its A-label form (``bäckerij.nl`` as ``xn--bckerij-r2a.nl``, RFC 5890),
    so that a relay without SMTPUTF8 takes the mails (issue 8 case 7); else as written.

    Raises ValueError for anything else: no address, no domain, two addresses (an unquoted comma in
    the name), or a UTF-8 local part (every mail would need SMTPUTF8).
    """
    try:
        header = _ADDRESS_HEADERS("from", mail_from)
        addresses = header.addresses if isinstance(header, AddressHeader) else ()
        if len(addresses) != 1:
            raise ValueError(f"{len(addresses)} addresses")
        [sender] = addresses
        if not sender.username.isascii():
            raise ValueError("a local part that is not ASCII needs SMTPUTF8 for every mail")
        if header.defects or not sender.username or not sender.domain:
            raise ValueError("not one complete address")
        if sender.domain.isascii():
            return mail_from
        domain = idna.encode(sender.domain, uts46=True).decode("ascii")
        return str(Address(display_name=sender.display_name, username=sender.username, domain=domain))
    except (ValueError, HeaderParseError) as exc:
        raise ValueError(
            f"MAIL_FROM must be one mailbox such as 'Klaspost <noreply@uwschool.nl>' (quote a name "
            f"with a comma): {mail_from!r}: {exc}"
        ) from exc


# RFC 2606 and RFC 6761/6762 names that never reach anyone.
_RESERVED_SUFFIXES = (".local", ".localhost", ".invalid", ".test", ".example")
_RESERVED_DOMAINS = ("localhost", "example.com", "example.net", "example.org")


def vapid_subject_problem(subject: str | None) -> str | None:
    """Why ``subject`` cannot be a VAPID contact (RFC 8292 2.1: a mailto: or https: URI), or None.

    Push services refuse a JWT whose contact is on a reserved or local name (Apple: 403 BadJwtToken).
    """
    if not subject:
        return "is not set: give a contact for the push services, e.g. mailto:beheer@uwschool.nl"
    parts = urlsplit(subject.strip())
    if parts.scheme == "mailto":
        host = parts.path.rpartition("@")[2]
    elif parts.scheme == "https":
        host = parts.hostname or ""
    else:
        return f"must be a mailto: or https: URL, not {subject!r}"
    host = host.lower().rstrip(".")
    if not host:
        return f"names no host: {subject!r}"
    if _is_ip(host) or "." not in host:
        return f"must name a domain on the internet, not {host!r}: {subject!r}"
    if _reserved(host):
        return f"names a reserved domain ({host}) that push services refuse: {subject!r}"
    return None


def public_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be where readers of a mail reach this server (unsubscribe links, links to
    the web front), or None: a loopback or private address, ``localhost`` or a reserved domain
    (RFC 2606, RFC 6761) reaches nobody outside this machine or network."""
    host = (urlsplit(url.strip()).hostname or "").lower().rstrip(".")
    if not host:
        return f"names no host: {url!r}"
    if _is_ip(host):
        address = ipaddress.ip_address(host.strip("[]"))
        if address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified:
            return f"is a local address ({host}) that no reader of a mail can reach: {url!r}"
        return None
    if "." not in host or host in _RESERVED_DOMAINS or host.endswith(_RESERVED_SUFFIXES):
        return f"names a local or reserved host ({host}) that no reader of a mail can reach: {url!r}"
    if host.endswith(".example.com"):
        return f"names a reserved domain ({host}): {url!r}"
    return None


def _reserved(host: str) -> bool:
    return host in _RESERVED_DOMAINS or host.endswith(_RESERVED_SUFFIXES) or host.endswith(".example.com")


def _addr_spec(mail_from: str) -> str:
    """The address of a MAIL_FROM that sender_mailbox took (``noreply@klaspost.nl``)."""
    header = _ADDRESS_HEADERS("from", mail_from)
    assert isinstance(header, AddressHeader)
    return header.addresses[0].addr_spec


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
