"""What a parent is told about a new post: the email and the Web Push payload, in Dutch or English."""

import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from shared.contracts import Locale

DEFAULT_LOCALE: Locale = "nl"
_LOCALES: tuple[Locale, ...] = ("nl", "en")

# Push services accept 4096 encrypted bytes; aes128gcm adds 103 (header, padding delimiter, tag).
# A notification shows a line or two, so a far smaller budget keeps us clear of the limit.
MAX_PUSH_PAYLOAD_BYTES = 1024
_MAX_GROUP_NAME_CHARS = 80
_ELLIPSIS = "…"
_ZWJ = "\u200d"
_JOINERS = _ZWJ + "\ufe0e\ufe0f"  # and the text/emoji variation selectors

_NEW_POST_TITLE: dict[Locale, str] = {
    "nl": "Nieuw bericht in {group}",
    "en": "New post in {group}",
}

_templates = Environment(
    loader=PackageLoader("notifier", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
)


def resolve_locale(locale: str | None) -> Locale:
    """'en', 'en-GB', 'EN_us' mean English; anything else gets Dutch, the language of the schools."""
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    for known in _LOCALES:
        if language == known:
            return known
    return DEFAULT_LOCALE


def new_post_email(
    locale: str,
    recipient_name: str,
    recipient_email: str,
    group_name: str,
    excerpt: str,
    post_url: str,
    notification_id: uuid.UUID | str,
    mail_from: str,
) -> EmailMessage:
    """A multipart/alternative mail (text and HTML) telling a parent about a new post in a group."""
    lang = resolve_locale(locale)
    _require_web_url(post_url)
    group = _one_line(group_name)
    subject = _NEW_POST_TITLE[lang].format(group=group)
    context = {
        "lang": lang,
        "subject": subject,
        "recipient_name": _one_line(recipient_name),
        "group_name": group,
        "excerpt": _clean(excerpt).strip(),
        "post_url": post_url,
    }
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = _recipient(recipient_name, recipient_email)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = notification_message_id(notification_id, mail_from)
    msg["X-Klaspost-Notification-Id"] = str(notification_id)
    # RFC 3834: out-of-office robots must not answer a noreply sender.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(_templates.get_template(f"new_post.{lang}.txt").render(context))
    msg.add_alternative(_templates.get_template(f"new_post.{lang}.html").render(context), subtype="html")
    msg["Content-Language"] = lang  # after the parts: set_content() drops Content-* headers
    return msg


def notification_message_id(notification_id: uuid.UUID | str, mail_from: str) -> str:
    """The same notification always gets the same Message-ID, so a re-send is recognised as one."""
    token = str(notification_id)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", token):
        raise ValueError(f"notification id cannot go into a Message-ID: {token!r}")
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "klaspost.local"
    return f"<notification.{token}@{domain}>"


def new_post_push(
    locale: str,
    group_name: str,
    excerpt: str,
    post_url: str,
    post_id: uuid.UUID | str,
) -> dict[str, str]:
    """The Web Push payload the service worker shows; its JSON stays within MAX_PUSH_PAYLOAD_BYTES."""
    lang = resolve_locale(locale)
    _require_web_url(post_url)
    group = _truncate(_one_line(group_name), _MAX_GROUP_NAME_CHARS)
    # The same tag makes a re-sent notification replace the shown one instead of doubling it.
    payload = {
        "title": _NEW_POST_TITLE[lang].format(group=group),
        "body": "",
        "url": post_url,
        "tag": f"post-{post_id}",
    }
    room = MAX_PUSH_PAYLOAD_BYTES - push_payload_size(payload)
    if room < 0:
        raise ValueError("push payload is too large even without the excerpt (post_url too long?)")
    payload["body"] = _fit_json_bytes(_one_line(excerpt), room)
    return payload


def encode_push_payload(payload: Mapping[str, Any]) -> bytes:
    """The bytes that get encrypted and sent; compact and UTF-8 so the size budget means what it says."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def push_payload_size(payload: Mapping[str, Any]) -> int:
    return len(encode_push_payload(payload))


def _recipient(name: str, address: str) -> Address:
    try:
        return Address(display_name=_one_line(name), addr_spec=address.strip())
    except (ValueError, IndexError, HeaderParseError) as exc:  # the email package's assorted complaints
        raise ValueError(f"not a usable mail address: {address!r}") from exc


def _require_web_url(url: str) -> None:
    # The link lands in an href and a notification click: never javascript: or data: URLs.
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"post_url must be an http(s) URL: {url!r}")


def _clean(text: str) -> str:
    """Lone surrogates cannot be encoded as UTF-8 and would fail the send much later."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _one_line(text: str) -> str:
    """Headers and notification titles must not contain line breaks (header injection, ugly titles)."""
    return " ".join(_clean(text).split())


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return _cut(text, max_chars - 1) + _ELLIPSIS


def _fit_json_bytes(text: str, budget: int) -> str:
    """The longest prefix of text whose JSON string form fits in budget bytes, ending in an ellipsis
    when cut. Counting the escaped form matters: a quote or control character takes 2-6 bytes."""

    def cost(s: str) -> int:
        return len(json.dumps(s, ensure_ascii=False).encode()) - 2

    if cost(text) <= budget:
        return text
    budget -= cost(_ELLIPSIS)
    used = 0
    end = 0
    for char in text:
        used += cost(char)
        if used > budget:
            break
        end += 1
    kept = _cut(text, end)
    return kept + _ELLIPSIS if kept else ""


def _cut(text: str, end: int) -> str:
    """text[:end], backed off so that it never splits a character cluster (an accent, an emoji
    sequence) and, when one is near, ends at a word boundary."""
    while 0 < end < len(text) and _continues_cluster(text, end):
        end -= 1
    space = text.rfind(" ", 0, end)
    if space > end * 0.8:
        end = space
    return text[:end].rstrip()


def _continues_cluster(text: str, i: int) -> bool:
    char = text[i]
    return (
        unicodedata.combining(char) != 0
        or char in _JOINERS
        or "\U0001f3fb" <= char <= "\U0001f3ff"  # skin tone modifier
        or (i > 0 and text[i - 1] == _ZWJ)
    )
