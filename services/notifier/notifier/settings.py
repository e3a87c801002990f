"""Notifier's settings: mail and push delivery."""

from pydantic import SecretStr

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8084
    token_audience: str = "klaspost-notifier"
    public_base_url: str = "http://127.0.0.1:8080"
    # Dates in mails are shown in the school's time zone; this one when the school is not known (yet).
    default_time_zone: str = "Europe/Amsterdam"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 15.0
    mail_from: str = "Klaspost <noreply@klaspost.local>"
    # VAPID key pair for Web Push: base64url of the raw P-256 private scalar and the uncompressed public point.
    vapid_private_key: SecretStr | None = None
    vapid_public_key: str | None = None
    vapid_subject: str = "mailto:beheer@klaspost.local"
    push_ttl_seconds: int = 86_400
    push_timeout_seconds: float = 10.0
    delivery_max_attempts: int = 8
    delivery_batch: int = 50
    # How often delivery figures of recent posts are counted and reported to posts (DeliveryReport).
    delivery_report_seconds: float = 5.0
    # Hosts a browser's push subscription may point at. The notifier POSTs to whatever endpoint a
    # subscription names, so without this list a caller could aim it at internal addresses.
    push_allowed_hosts: list[str] = [
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "web.push.apple.com",
        "*.notify.windows.com",
    ]
