"""What a person is told for each kind of message besides one-off mails: a new post, the daily
digest, the teacher's "nothing posted this week" reminder, conference bookings (opened, booked,
moved, cancelled, the day before, not yet booked) and a helper-list promotion. Each kind has an email
(text + HTML from ``notice.{lang}`` / ``digest.{lang}`` / ``new_post.{lang}`` templates) and a push
payload, in Dutch or English by the reader's language, dates in the school's time zone.

A notification row holds the kind and, in ``context``, what its texts need (as the event said it, with
moments as ISO 8601 strings).
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from notifier.compose import (
    MailParts,
    OutgoingMail,
    clean,
    message_id,
    one_line,
    recipient,
    require_web_url,
    resolve_locale,
)
from notifier.mails import format_moment
from notifier.messages import (
    MAX_PUSH_PAYLOAD_BYTES,
    fit_json_bytes,
    new_post_parts,
    new_post_push,
    push_payload_size,
    truncate,
)
from notifier.preferences import Category
from shared.contracts import Locale

NoticeKind = Literal[
    "group_quiet",
    "conference_opened",
    "slot_booked",
    "slot_moved",
    "slot_cancelled",
    "day_before",
    "booking_reminder",
    "signup_promoted",
]
NOTICE_KINDS: tuple[NoticeKind, ...] = get_args(NoticeKind)

#: The preference category each kind of message falls under ("digest" is a mail of its own).
CATEGORY: dict[str, Category] = {
    "new_post": "posts",
    "conference_opened": "signups",
    "slot_booked": "signups",
    "slot_moved": "signups",
    "slot_cancelled": "signups",
    "signup_promoted": "signups",
    "day_before": "reminders",
    "booking_reminder": "reminders",
    "group_quiet": "reminders",
}

_SUBJECTS: dict[str, dict[Locale, str]] = {
    "group_quiet": {
        "nl": "Nog niets geplaatst in {group_name} deze week",
        "en": "Nothing posted in {group_name} this week yet",
    },
    "conference_opened": {
        "nl": "U kunt nu inschrijven: {title}",
        "en": "Booking is open: {title}",
    },
    "slot_booked": {
        "nl": "Bevestiging: {title} voor {child_name} op {starts}",
        "en": "Confirmed: {title} for {child_name} on {starts}",
    },
    "slot_moved": {
        "nl": "Verzet: {title} voor {child_name} is nu op {starts}",
        "en": "Moved: {title} for {child_name} is now on {starts}",
    },
    "slot_cancelled": {
        "nl": "Geannuleerd: {title} voor {child_name} op {starts}",
        "en": "Cancelled: {title} for {child_name} on {starts}",
    },
    "day_before": {
        "nl": "Morgen: {title} voor {child_name} om {time}",
        "en": "Tomorrow: {title} for {child_name} at {time}",
    },
    "booking_reminder": {
        "nl": "Nog niet ingeschreven: {title} voor {child_name}",
        "en": "Not booked yet: {title} for {child_name}",
    },
    "signup_promoted": {
        "nl": "U staat nu ingeschreven: {item_title} ({list_title})",
        "en": "You have a place now: {item_title} ({list_title})",
    },
}
_DIGEST_SUBJECT: dict[Locale, str] = {
    "nl": "Klaspost: {count} nieuwe berichten",
    "en": "Klaspost: {count} new posts",
}
_DIGEST_ONE: dict[Locale, str] = {"nl": "Klaspost: 1 nieuw bericht", "en": "Klaspost: 1 new post"}
# What the templates may name (StrictUndefined): a kind's context lacks what other kinds have.
_TEXTS = (
    "group_name", "week", "title", "child_name", "location", "item_title", "list_title",
    "opens_at", "closes_at", "starts_at", "ends_at", "previous_starts_at", "deadline", "time",
)  # fmt: skip
_MOMENTS = ("opens_at", "closes_at", "starts_at", "ends_at", "previous_starts_at", "deadline")


@dataclass(frozen=True)
class Rendered:
    """A message's words in one language: the subject (also the push title), a one-line summary
    (the push body), the link, and the values its templates get."""

    subject: str
    summary: str
    url: str
    values: dict[str, Any]


def link_for(kind: str, context: Mapping[str, Any], base_url: str) -> str:
    """Where the message leads in the web app."""
    base = base_url.rstrip("/")
    if kind == "group_quiet":
        return f"{base}/groups/{context['group_id']}"
    if kind == "signup_promoted":
        return f"{base}/helper-lists/{context['list_id']}"
    return f"{base}/conferences/{context['schedule_id']}"


def render(kind: str, locale: str, context: Mapping[str, Any], zone: ZoneInfo, base_url: str) -> Rendered:
    """The words of a notice kind for one reader. Raises ValueError for a link that is not http(s)."""
    lang = resolve_locale(locale)
    values: dict[str, Any] = {k: one_line(str(v)) for k, v in context.items() if isinstance(v, str)}
    for name in _MOMENTS:
        if context.get(name):
            values[name] = format_moment(datetime.fromisoformat(context[name]), lang, zone)
    if context.get("starts_at"):
        values["time"] = f"{datetime.fromisoformat(context['starts_at']).astimezone(zone):%H:%M}"
    for name in _TEXTS:
        values.setdefault(name, "")
    values["teacher_names"] = ", ".join(one_line(n) for n in context.get("teacher_names", []))
    values["posts_this_week"] = context.get("posts_this_week", 0)
    values["min_posts_per_week"] = context.get("min_posts_per_week", 0)
    url = link_for(kind, context, base_url)
    require_web_url(url)
    subject = one_line(
        _SUBJECTS[kind][lang].format(
            starts=values.get("starts_at", ""),
            **{k: v for k, v in values.items() if k != "starts"},
        )
    )
    summary = {
        "group_quiet": values.get("week", ""),
        "conference_opened": values.get("closes_at", ""),
        "slot_booked": values.get("location", "") or values["teacher_names"],
        "slot_moved": values.get("previous_starts_at", ""),
        "slot_cancelled": values.get("starts_at", ""),
        "day_before": values.get("location", "") or values["teacher_names"],
        "booking_reminder": values.get("closes_at", ""),
        "signup_promoted": values.get("deadline", ""),
    }.get(kind, "")
    return Rendered(subject, summary, url, {**values, "kind": kind, "url": url})


def notice_parts(
    kind: str,
    notification_id: uuid.UUID,
    delivery_id: uuid.UUID,
    locale: str,
    recipient_name: str,
    recipient_email: str,
    context: Mapping[str, Any],
    zone: ZoneInfo,
    base_url: str,
    mail_from: str,
    extra_headers: Mapping[str, str],
) -> MailParts:
    """The email of a notice kind (``.message()``, or as bytes by compose.OutgoingMail). Its Message-ID is
    the delivery's (one per reader): a re-send is recognised as one."""
    lang = resolve_locale(locale)
    words = render(kind, locale, context, zone, base_url)
    values = {**words.values, "recipient_name": one_line(recipient_name)}
    headers = {
        "Message-ID": message_id(kind, delivery_id, mail_from),
        "X-Klaspost-Notification-Id": str(notification_id),
        **extra_headers,
    }
    return MailParts(
        "notice", lang, words.subject, recipient(recipient_name, recipient_email), values, mail_from, headers
    )


_MAX_PUSH_TITLE_CHARS = 120


def notice_push(
    kind: str,
    notification_id: uuid.UUID,
    locale: str,
    context: Mapping[str, Any],
    zone: ZoneInfo,
    base_url: str,
) -> dict[str, str]:
    """The push payload of a notice kind (title, body, url, tag), within MAX_PUSH_PAYLOAD_BYTES."""
    words = render(kind, locale, context, zone, base_url)
    # Cut between characters as a reader sees them (never inside an emoji or a flag), with an ellipsis.
    title = truncate(words.subject, _MAX_PUSH_TITLE_CHARS)
    payload = {"title": title, "body": "", "url": words.url, "tag": f"{kind}-{notification_id}"}
    room = MAX_PUSH_PAYLOAD_BYTES - push_payload_size(payload)
    payload["body"] = fit_json_bytes(words.summary, max(room, 0))
    return payload


def digest_parts(
    delivery_id: uuid.UUID,
    locale: str,
    recipient_name: str,
    recipient_email: str,
    context: Mapping[str, Any],
    zone: ZoneInfo,
    base_url: str,
    mail_from: str,
    extra_headers: Mapping[str, str],
) -> MailParts:
    """The daily digest: every message held for it, oldest first. ``context``: ``{"day": "2026-12-01",
    "items": [{"kind", "group_name", "title", "excerpt", "post_id", "context"}]}`` (a post's own
    words; any other kind is rendered here in the reader's language)."""
    lang = resolve_locale(locale)
    items = []
    for item in context["items"]:
        if item["kind"] == "new_post":
            title, excerpt, url = (
                item.get("title") or "",
                item.get("excerpt") or "",
                post_url(base_url, item["post_id"]),
            )
        else:
            words = render(item["kind"], locale, item.get("context") or {}, zone, base_url)
            title, excerpt, url = words.subject, words.summary, words.url
        require_web_url(url)
        items.append(
            {
                "group_name": one_line(item.get("group_name") or ""),
                "title": one_line(title),
                "excerpt": clean(excerpt).strip(),
                "url": url,
            }
        )
    count = len(items)
    subject = _DIGEST_ONE[lang] if count == 1 else _DIGEST_SUBJECT[lang].format(count=count)
    values = {"recipient_name": one_line(recipient_name), "items": items, "day": context.get("day", "")}
    headers = {
        "Message-ID": message_id("digest", delivery_id, mail_from),
        "X-Klaspost-Notification-Id": str(delivery_id),
        **extra_headers,
    }
    return MailParts(
        "digest", lang, subject, recipient(recipient_name, recipient_email), values, mail_from, headers
    )


def post_url(base_url: str, post_id: uuid.UUID) -> str:
    return f"{base_url.rstrip('/')}/posts/{post_id}"


def delivery_email(
    row: Mapping[str, Any], zone: ZoneInfo, base_url: str, mail_from: str, extra_headers: Mapping[str, str]
) -> OutgoingMail | EmailMessage:
    """The email of one claimed delivery row (kind, context, notification and reader), any kind, as
    bytes for the relay (compose.OutgoingMail: the headers a post's mails share are folded once)."""
    kind = row.get("kind") or "new_post"
    parts: MailParts
    if kind == "new_post":
        parts = new_post_parts(
            row["locale"],
            row["display_name"],
            row["email"],
            row["group_name"] or "",
            row["excerpt"],
            post_url(base_url, row["post_id"]),
            row["delivery_id"],
            mail_from,
        )
        parts = replace(parts, headers={**parts.headers, **extra_headers})
    elif kind == "digest":
        parts = digest_parts(
            row["delivery_id"], row["locale"], row["display_name"], row["email"], row["context"], zone,
            base_url, mail_from, extra_headers,
        )  # fmt: skip
    else:
        parts = notice_parts(
            kind, row["notification_id"], row["delivery_id"], row["locale"], row["display_name"], row["email"],
            row["context"],
            zone, base_url, mail_from, extra_headers,
        )  # fmt: skip
    return parts.outgoing()


def delivery_push(row: Mapping[str, Any], zone: ZoneInfo, base_url: str) -> tuple[dict[str, str], str]:
    """The push payload of one claimed delivery row, and its Topic (at most 32 URL-safe characters:
    the same for every repeat, so the push service replaces an undelivered one)."""
    kind = row.get("kind") or "new_post"
    if kind == "new_post":
        payload = new_post_push(
            row["locale"],
            row["group_name"] or "",
            row["excerpt"],
            post_url(base_url, row["post_id"]),
            row["post_id"],
        )
        return payload, f"post-{row['post_id'].hex[:27]}"
    payload = notice_push(kind, row["notification_id"], row["locale"], row["context"], zone, base_url)
    return payload, f"n-{row['notification_id'].hex[:30]}"
