"""One-off mails to an address that need not have an account yet: the invitation with its access
code (and its reminders), the password reset link, and the welcome that asks new staff to set a
password. Each is composed from a row of the ``mails`` table and the secret it keeps until sent."""

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal, get_args
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.compose import build_email, message_id, one_line, recipient, require_web_url, resolve_locale
from shared.contracts import Locale

MailKind = Literal["invitation", "invitation_reminder", "password_reset", "welcome"]
MAIL_KINDS: tuple[MailKind, ...] = get_args(MailKind)

_SUBJECTS: dict[MailKind, dict[Locale, str]] = {
    "invitation": {
        "nl": "{school} nodigt u uit voor Klaspost voor {child}",
        "en": "{school} invites you to Klaspost for {child}",
    },
    "invitation_reminder": {
        "nl": "Herinnering: {school} nodigt u uit voor Klaspost voor {child}",
        "en": "Reminder: {school} invites you to Klaspost for {child}",
    },
    "password_reset": {
        "nl": "Nieuw wachtwoord voor Klaspost",
        "en": "Reset your Klaspost password",
    },
    "welcome": {
        "nl": "{school} heeft u toegevoegd aan Klaspost: stel uw wachtwoord in",
        "en": "{school} added you to Klaspost: set your password",
    },
}
_WELCOME_WITHOUT_SCHOOL: dict[Locale, str] = {
    "nl": "Welkom bij Klaspost: stel uw wachtwoord in",
    "en": "Welcome to Klaspost: set your password",
}

_WEEKDAYS: dict[Locale, tuple[str, ...]] = {
    "nl": ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS: dict[Locale, tuple[str, ...]] = {
    "nl": (
        "januari", "februari", "maart", "april", "mei", "juni",
        "juli", "augustus", "september", "oktober", "november", "december",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ),
}  # fmt: skip
_CODE_GROUP = 4


def invitation_link(public_base_url: str, code: str) -> str:
    """``{base}/invite#code={code}``: in the fragment, the code never reaches a server's logs."""
    return f"{public_base_url.rstrip('/')}/invite#code={quote(code, safe='')}"


def password_link(public_base_url: str, token: str) -> str:
    """``{base}/reset-password#token={token}``, for a reset and a welcome alike."""
    return f"{public_base_url.rstrip('/')}/reset-password#token={quote(token, safe='')}"


def code_groups(code: str) -> list[str]:
    """The code in groups of four to read and type (``K7QM3XPDWN9R`` -> ``K7QM``, ``3XPD``, ``WN9R``);
    a code that is not plain letters and digits is shown as it is."""
    compact = re.sub(r"[\s-]", "", code)
    if not (compact.isascii() and compact.isalnum()):
        return [code]
    return [compact[i : i + _CODE_GROUP] for i in range(0, len(compact), _CODE_GROUP)]


def local_zone(name: str | None, default: str) -> ZoneInfo:
    """The school's time zone when it is known and valid, else ``default`` (an IANA name)."""
    for candidate in (name, default):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def format_moment(when: datetime, lang: Locale, zone: ZoneInfo) -> str:
    """``maandag 14 december 2026 om 17:00`` / ``Monday 14 December 2026 at 17:00``, in ``zone``."""
    local = when.astimezone(zone)
    day = f"{_WEEKDAYS[lang][local.weekday()]} {local.day} {_MONTHS[lang][local.month - 1]} {local.year}"
    return f"{day} {'om' if lang == 'nl' else 'at'} {local:%H:%M}"


def one_off_email(
    kind: MailKind,
    mail_id: uuid.UUID,
    locale: str,
    to_email: str,
    recipient_name: str | None,
    context: Mapping[str, Any],
    secret: str,
    zone: ZoneInfo,
    public_base_url: str,
    mail_from: str,
) -> EmailMessage:
    """The mail of one ``mails`` row. ``context`` holds what the event said besides the secret:
    ``school_name``, ``expires_at`` (ISO 8601), and for invitations ``child_name`` and ``reminder``.

    Raises ValueError when the address or link cannot go into a mail.
    """
    # The base, not the link: an error message must not carry the secret.
    require_web_url(public_base_url)
    lang = resolve_locale(locale)
    school = one_line(context.get("school_name") or "")
    values: dict[str, Any] = {
        "recipient_name": one_line(recipient_name or ""),
        "school_name": school,
        "expires": format_moment(datetime.fromisoformat(context["expires_at"]), lang, zone),
    }
    if kind in ("invitation", "invitation_reminder"):
        child = one_line(context["child_name"])
        link = invitation_link(public_base_url, secret)
        subject = _SUBJECTS[kind][lang].format(school=school, child=child)
        template = "invitation"
        values |= {
            "child_name": child,
            "reminder": kind == "invitation_reminder",
            "code_groups": code_groups(secret),
            "invite_url": link,
            "invite_page": f"{public_base_url.rstrip('/')}/invite",
        }
    else:
        link = password_link(public_base_url, secret)
        welcome = kind == "welcome"
        if welcome and not school:
            subject = _WELCOME_WITHOUT_SCHOOL[lang]
        else:
            subject = _SUBJECTS[kind][lang].format(school=school)
        template = "password"
        values |= {"welcome": welcome, "reset_url": link}
    headers = {"Message-ID": message_id(kind, mail_id, mail_from), "X-Klaspost-Mail-Id": str(mail_id)}
    return build_email(
        template, lang, subject, recipient(recipient_name or "", to_email), values, mail_from, headers
    )
