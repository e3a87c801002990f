"""What a parent is told about a new post: the email and the Web Push payload, in Dutch or English."""

import json
import unicodedata
import uuid
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from notifier.compose import (
    MailParts,
    clean,
    message_id,
    one_line,
    recipient,
    require_web_url,
    resolve_locale,
)
from shared.contracts import Locale

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
    return new_post_parts(
        locale, recipient_name, recipient_email, group_name, excerpt, post_url, notification_id, mail_from
    ).message()


def new_post_parts(
    locale: str,
    recipient_name: str,
    recipient_email: str,
    group_name: str,
    excerpt: str,
    post_url: str,
    notification_id: uuid.UUID | str,
    mail_from: str,
) -> MailParts:
    """What new_post_email is made of (to build it as bytes, see compose.OutgoingMail)."""
    lang = resolve_locale(locale)
    require_web_url(post_url)
    group = one_line(group_name)
    subject = _NEW_POST_TITLE[lang].format(group=group)
    context = {
        "recipient_name": one_line(recipient_name),
        "group_name": group,
        "excerpt": clean(excerpt).strip(),
        "post_url": post_url,
    }
    headers = {
        "Message-ID": notification_message_id(notification_id, mail_from),
        "X-Klaspost-Notification-Id": str(notification_id),
    }
    return MailParts(
        "new_post", lang, subject, recipient(recipient_name, recipient_email), context, mail_from, headers
    )


def notification_message_id(notification_id: uuid.UUID | str, mail_from: str) -> str:
    """The same notification always gets the same Message-ID, so a re-send is recognised as one."""
    return message_id("notification", notification_id, mail_from)


def new_post_push(
    locale: str,
    group_name: str,
    excerpt: str,
    post_url: str,
    post_id: uuid.UUID | str,
) -> dict[str, str]:
    """The Web Push payload the service worker shows; its JSON stays within MAX_PUSH_PAYLOAD_BYTES."""
    lang = resolve_locale(locale)
    require_web_url(post_url)
    group = truncate(one_line(group_name), _MAX_GROUP_NAME_CHARS)
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
    payload["body"] = fit_json_bytes(one_line(excerpt), room)
    return payload


def encode_push_payload(payload: Mapping[str, Any]) -> bytes:
    """The bytes that get encrypted and sent; compact and UTF-8 so the size budget means what it says."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def push_payload_size(payload: Mapping[str, Any]) -> int:
    return len(encode_push_payload(payload))


def truncate(text: str, max_chars: int) -> str:
    """text in at most max_chars characters: cut between clusters (see _cut), ending in an ellipsis."""
    if len(text) <= max_chars:
        return text
    return _cut(text, max_chars - 1) + _ELLIPSIS


def fit_json_bytes(text: str, budget: int) -> str:
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
        or "\U000e0020" <= char <= "\U000e007f"  # tag characters (subdivision flags)
        or (i > 0 and text[i - 1] == _ZWJ)
        or (
            _regional_indicator(char) and _regional_indicators_before(text, i) % 2 == 1
        )  # a flag's second half
    )


def _regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _regional_indicators_before(text: str, i: int) -> int:
    count = 0
    while i - count > 0 and _regional_indicator(text[i - count - 1]):
        count += 1
    return count
