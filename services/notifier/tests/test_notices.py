"""Every notice kind renders in Dutch and English, as text and HTML (autoescaped), with the
school-local times, a push payload within budget, and the digest with posts and notices mixed."""

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from notifier.messages import MAX_PUSH_PAYLOAD_BYTES, push_payload_size
from notifier.notices import NOTICE_KINDS, digest_parts, notice_parts, notice_push

ZONE = ZoneInfo("Europe/Amsterdam")
BASE = "https://klaspost.test"
STARTS = datetime(2026, 12, 14, 14, 30, tzinfo=UTC)  # Monday 15:30 in Amsterdam

CONTEXT: dict[str, Any] = {
    "group_id": str(uuid.uuid4()),
    "group_name": "Groep 5 <b>",
    "week": "2026-W50",
    "posts_this_week": 0,
    "min_posts_per_week": 1,
    "schedule_id": str(uuid.uuid4()),
    "booking_id": str(uuid.uuid4()),
    "title": "10-minutengesprek <script>",
    "child_name": "Sam",
    "teacher_names": ["Juf Anne", "Meester Ali"],
    "location": "Lokaal 3",
    "starts_at": STARTS.isoformat(),
    "ends_at": STARTS.isoformat(),
    "previous_starts_at": STARTS.isoformat(),
    "opens_at": STARTS.isoformat(),
    "closes_at": STARTS.isoformat(),
    "list_id": str(uuid.uuid4()),
    "item_id": str(uuid.uuid4()),
    "list_title": "Hulpouders",
    "item_title": "Rijden",
    "deadline": "",
}


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = cast(EmailMessage, msg.get_body(("plain",))).get_content()
    html = cast(EmailMessage, msg.get_body(("html",))).get_content()
    return text, html


@pytest.mark.parametrize("kind", NOTICE_KINDS)
@pytest.mark.parametrize("locale", ["nl", "en"])
def test_every_kind_renders_in_both_languages(kind: str, locale: str) -> None:
    msg = notice_parts(
        kind, uuid.uuid4(), uuid.uuid4(), locale, "Ouder", "ouder@ouders.test", CONTEXT, ZONE, BASE,
        "Klaspost <noreply@klaspost.test>", {"List-Unsubscribe": "<https://x.test/u>"},
    ).message()  # fmt: skip
    text, html = parts(msg)
    assert msg["Content-Language"] == locale
    assert msg["List-Unsubscribe"] == "<https://x.test/u>"
    assert "<script>" not in html
    assert "<b>" not in html
    assert BASE in text
    if kind in ("slot_booked", "slot_moved", "day_before"):
        assert "15:30" in text  # school-local
    payload = notice_push(kind, uuid.uuid4(), locale, CONTEXT, ZONE, BASE)
    assert payload["title"]
    assert payload["url"].startswith(BASE)
    assert push_payload_size(payload) <= MAX_PUSH_PAYLOAD_BYTES


def test_the_digest_lists_posts_and_notices_in_the_reader_s_language() -> None:
    post_id = uuid.uuid4()
    items = [
        {"kind": "new_post", "group_name": "Groep 5", "title": "Gym", "excerpt": "Neem gymschoenen mee",
         "post_id": str(post_id), "context": {"title": "Gym"}},
        {"kind": "booking_reminder", "group_name": "", "title": "", "excerpt": "", "post_id": None,
         "context": CONTEXT},
    ]  # fmt: skip
    msg = digest_parts(
        uuid.uuid4(), "en", "Parent", "parent@ouders.test", {"day": "2026-12-01", "items": items}, ZONE, BASE,
        "Klaspost <noreply@klaspost.test>", {},
    ).message()  # fmt: skip
    text, html = parts(msg)
    assert msg["Subject"] == "Klaspost: 2 new posts"
    assert f"{BASE}/posts/{post_id}" in text
    assert "Neem gymschoenen mee" in text
    assert "Not booked yet" in text
    assert "<script>" not in html
