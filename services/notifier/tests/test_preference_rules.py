"""The rules of preferences.py and unsubscribe.py on their own: which deliveries a message makes for
a person, quiet hours in the school's time zone (across midnight and a DST change), and the signed
one-click unsubscribe token."""

import base64
import uuid
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from notifier.preferences import Choice, QuietHours, Recipient, channels_for, plan, without_email
from notifier.unsubscribe import headers, make_token, read_token

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NIGHT = QuietHours(time(21, 0), time(7, 0))
PERSON = uuid.uuid4()
DEVICE = uuid.uuid4()


def at(hour: int, minute: int = 0, day: int = 1, month: int = 12) -> datetime:
    """A moment given in Amsterdam time, as UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=AMSTERDAM).astimezone(UTC)


def who(
    channel: str = "auto", timing: str = "immediate", devices: int = 1, quiet: QuietHours | None = None
) -> Recipient:
    return Recipient(PERSON, Choice(channel, timing), tuple(uuid.uuid4() for _ in range(devices)), quiet)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("channel", "device", "expected"),
    [
        ("auto", True, (False, True)),
        ("auto", False, (True, False)),
        ("push", False, (False, True)),
        ("email", True, (True, False)),
        ("both", True, (True, True)),
        ("none", True, (False, False)),
    ],
)
def test_channels_by_choice_and_the_default(channel: str, device: bool, expected: tuple[bool, bool]) -> None:
    assert channels_for(channel, device) == expected  # type: ignore[arg-type]


def test_quiet_hours_across_midnight_end_the_next_morning_school_local() -> None:
    assert NIGHT.end_after(at(22, 30), AMSTERDAM) == at(7, 0, day=2)
    assert NIGHT.end_after(at(3, 0), AMSTERDAM) == at(7, 0, day=1)
    assert NIGHT.end_after(at(7, 0), AMSTERDAM) is None
    assert NIGHT.end_after(at(20, 59), AMSTERDAM) is None
    day = QuietHours(time(12, 0), time(13, 0))
    assert day.end_after(at(12, 30), AMSTERDAM) == at(13, 0)
    assert day.end_after(at(22, 0), AMSTERDAM) is None


def test_quiet_hours_over_the_dst_change_end_at_local_seven() -> None:
    # 25 October 2026: clocks go back at 03:00. The push is held until 07:00 local (06:00 UTC).
    end = NIGHT.end_after(at(23, 0, day=24, month=10), AMSTERDAM)
    assert end == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)


def test_a_push_in_quiet_hours_is_held_an_email_is_not() -> None:
    planned = plan(who("both", quiet=NIGHT), now=at(23, 0), zone=AMSTERDAM)
    assert [(p.channel, p.status, p.hold_reason) for p in planned] == [
        ("email", "pending", None),
        ("push", "held", "quiet_hours"),
    ]
    assert planned[1].hold_until == at(7, 0, day=2)


def test_urgent_goes_to_every_channel_at_once_whatever_the_choice() -> None:
    planned = plan(who("none", "digest", devices=2, quiet=NIGHT), now=at(23, 0), zone=AMSTERDAM, urgent=True)
    assert [(p.channel, p.status) for p in planned] == [
        ("email", "pending"),
        ("push", "pending"),
        ("push", "pending"),
    ]


def test_digest_holds_emails_only_and_never_a_scheduled_message() -> None:
    planned = plan(who("both", "digest"), now=at(10, 0), zone=AMSTERDAM)
    assert [(p.channel, p.status, p.hold_reason) for p in planned] == [
        ("email", "held", "digest"),
        ("push", "pending", None),
    ]
    later = at(9, 0, day=3)
    planned = plan(who("email", "digest"), now=at(10, 0), zone=AMSTERDAM, send_at=later)
    assert [(p.status, p.hold_reason, p.hold_until) for p in planned] == [("held", "scheduled", later)]


def test_a_scheduled_push_inside_quiet_hours_waits_for_their_end() -> None:
    planned = plan(who("push", quiet=NIGHT), now=at(10, 0), zone=AMSTERDAM, send_at=at(6, 0, day=2))
    assert [(p.status, p.hold_reason, p.hold_until) for p in planned] == [
        ("held", "quiet_hours", at(7, 0, day=2))
    ]


def test_none_makes_nothing() -> None:
    assert plan(who("none"), now=at(10, 0), zone=AMSTERDAM) == []


def test_unsubscribing_keeps_pushes() -> None:
    assert [without_email(c) for c in ("auto", "push", "email", "both", "none")] == [
        "push", "push", "none", "push", "none",
    ]  # fmt: skip


def test_the_unsubscribe_token_is_signed_and_names_person_and_category() -> None:
    key, other_key = b"k" * 32, b"o" * 32
    token = make_token(key, PERSON, "signups")
    assert read_token(key, token) == (PERSON, "signups")
    assert read_token(other_key, token) is None
    assert read_token(key, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    raw[16] = 0  # the category byte: "posts" instead of "signups", with the signups tag
    assert read_token(key, base64.urlsafe_b64encode(raw).decode().rstrip("=")) is None
    assert read_token(key, "") is None
    assert read_token(key, "!!!") is None
    assert len(token) < 50
    assert headers("https://api.klaspost.nl/notifier", key, PERSON, "digest") == {
        "List-Unsubscribe": f"<https://api.klaspost.nl/notifier/unsubscribe/{make_token(key, PERSON, 'digest')}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
