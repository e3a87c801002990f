"""Who gets which message how and when: each person's channel and timing per category of message,
their quiet hours, and the plan of deliveries that follows for one message (issue 8, "Preferences").

Rules:
- A person who never set a category has channel ``auto``: push where they have a device, else email;
  and timing ``immediate``.
- Timing ``digest`` means the *emails* of that category wait for the school's daily digest (one mail
  at ``SchoolChanged.digest_time``); pushes still follow the channel choice at once. A message for a
  later moment (``send_at``: the day-before reminder, a conference opening) is never put in a digest:
  it matters at its own time.
- Quiet hours hold pushes (never emails) that would arrive inside the window until its end, in the
  school's time zone; a window may wrap midnight (21:00-07:00). Its start and end are read on the
  school's clocks where daylight saving time skips or repeats an hour (``wall_clock_instant``): a
  time skipped is the first instant after the gap, a time repeated its first occurrence.
- Every moment is aware: a naive datetime is refused (ValueError) rather than read in the zone of
  the machine the notifier happens to run on.
- An urgent post goes out at once on every channel (email and every device) whatever the person chose.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg

Category = Literal["posts", "signups", "reminders"]
Channel = Literal["auto", "push", "email", "both", "none"]
Timing = Literal["immediate", "digest"]
CATEGORIES: tuple[Category, ...] = ("posts", "signups", "reminders")
HoldReason = Literal["quiet_hours", "digest", "scheduled"]


@dataclass(frozen=True)
class Choice:
    channel: Channel = "auto"
    timing: Timing = "immediate"


DEFAULT_CHOICE = Choice()


def as_utc(moment: datetime, what: str = "moment") -> datetime:
    """``moment`` in UTC; ValueError for a naive datetime (its zone would be the machine's guess)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} has no time zone: give an aware datetime")
    return moment.astimezone(UTC)


@lru_cache(maxsize=4096)  # a fan-out asks the same few (day, clock, zone) for every parent
def wall_clock_instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant (aware, UTC) at which the clocks of ``zone`` first show ``clock`` on ``day``.

    Where daylight saving time repeats the clock (Europe/Amsterdam, last Sunday of October: 02:00-03:00
    twice), the first occurrence. Where it skips the clock (last Sunday of March: 02:00-03:00 never
    shown), the first instant after the gap: 02:30 is 03:00 summer time, when the clocks pass 02:30,
    not 03:30 as ``datetime.combine(day, clock, tzinfo=zone)`` reads it (PEP 495 fold=0 takes the
    offset from before the change). Python gives both readings of a skipped time (fold 0 and 1); the
    change lies between them and is found to the second (zone changes fall on whole seconds)."""
    naive = datetime.combine(day, clock)
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant  # the time exists: fold=0 is its first occurrence
    after = instant.astimezone(zone).utcoffset()
    before = int(naive.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())  # before the change
    later = math.ceil(instant.timestamp())  # after the change
    while later - before > 1:
        middle = (before + later) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == after:
            later = middle
        else:
            before = middle
    return datetime.fromtimestamp(later, UTC)


@dataclass(frozen=True)
class QuietHours:
    """No push from ``starts`` to ``ends``, on the school's clocks. ``starts == ends`` is refused
    (ValueError; the API answers 422, the table has a CHECK): 00:00-00:00 could mean all day or
    never, and a parent who wants either says so by the channel (push off) or no quiet hours."""

    starts: time
    ends: time

    def __post_init__(self) -> None:
        if self.starts == self.ends:
            raise ValueError("quiet hours must end at another time than they start")

    def end_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The end (aware, UTC) of the quiet period ``moment`` falls in, or None when it falls
        outside. A period runs from the first instant the school's clocks show ``starts`` to the first
        instant they show ``ends`` (the next day when the window wraps midnight), both read by
        ``wall_clock_instant`` on DST days: it ends at 03:00 summer time when ``ends`` is 02:30 on the
        day the clocks skip 02:00-03:00, and at the first 02:30 on the day they repeat it (the second
        02:15 is past the end). ValueError for a naive ``moment``."""
        at = as_utc(moment)
        today = at.astimezone(zone).date()
        wraps = self.ends < self.starts
        for day in (today - timedelta(days=1), today):
            begins = wall_clock_instant(day, self.starts, zone)
            ends = wall_clock_instant(day + timedelta(days=1) if wraps else day, self.ends, zone)
            if begins <= at < ends:
                return ends
        return None


async def one_change_at_a_time(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    """Make the person's preference changes take turns until the end of the transaction (the settings
    page's PUT, a one-click unsubscribe): each then starts from what the one before wrote, and they
    lock the person's held deliveries and preference rows in one order (no deadlock between them)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('preferences:' || $1::uuid::text, 0))", person_id
    )


@dataclass(frozen=True)
class Recipient:
    """What the plan needs of one person: their choice for the message's category, their devices,
    their quiet hours."""

    person_id: uuid.UUID
    choice: Choice
    devices: tuple[uuid.UUID, ...]
    quiet: QuietHours | None


@dataclass(frozen=True)
class Planned:
    """One delivery to make: email (device_id None) or a push to one device; pending, or held."""

    person_id: uuid.UUID
    channel: Literal["email", "push"]
    device_id: uuid.UUID | None
    status: Literal["pending", "held"]
    hold_reason: HoldReason | None
    hold_until: datetime | None


def channels_for(choice: Channel, has_device: bool) -> tuple[bool, bool]:
    """(email, push) for a channel choice; ``auto`` is push where a device exists, else email."""
    if choice == "auto":
        return (not has_device, has_device)
    return (choice in ("email", "both"), choice in ("push", "both"))


def plan(
    recipient: Recipient,
    *,
    now: datetime,
    zone: ZoneInfo,
    urgent: bool = False,
    send_at: datetime | None = None,
    email_only: bool = False,
) -> list[Planned]:
    """The deliveries of one message to one person. ``send_at``: the message is for that moment
    (held until then when later than ``now``). ``email_only``: a message that exists as a mail only
    (none so far; kept for kinds without a push form). Moments are compared as instants (UTC): two
    datetimes in one ZoneInfo would be compared by their wall clocks. ValueError for a naive one."""
    now = as_utc(now, "now")
    send_at = as_utc(send_at, "send_at") if send_at is not None else None
    who = recipient.person_id
    if urgent:
        return [Planned(who, "email", None, "pending", None, None)] + [
            Planned(who, "push", device, "pending", None, None) for device in recipient.devices
        ]
    email, push = channels_for(recipient.choice.channel, bool(recipient.devices))
    if email_only:
        email, push = email or push, False
    later = send_at is not None and send_at > now
    moment = send_at if send_at is not None and later else now
    planned: list[Planned] = []
    if email:
        if later:
            planned.append(Planned(who, "email", None, "held", "scheduled", moment))
        elif recipient.choice.timing == "digest" and send_at is None:
            planned.append(Planned(who, "email", None, "held", "digest", None))
        else:
            planned.append(Planned(who, "email", None, "pending", None, None))
    if push:
        quiet_end = recipient.quiet.end_after(moment, zone) if recipient.quiet else None
        for device in recipient.devices:
            if quiet_end is not None:
                planned.append(Planned(who, "push", device, "held", "quiet_hours", quiet_end))
            elif later:
                planned.append(Planned(who, "push", device, "held", "scheduled", moment))
            else:
                planned.append(Planned(who, "push", device, "pending", None, None))
    return planned


def without_email(channel: Channel) -> Channel:
    """The channel left when a person turns the email of a category off (one-click unsubscribe):
    ``auto`` becomes ``push`` (they keep pushes if they have a device, and get no email either way)."""
    return _WITHOUT_EMAIL[channel]


_WITHOUT_EMAIL: dict[Channel, Channel] = {
    "auto": "push",
    "push": "push",
    "email": "none",
    "both": "push",
    "none": "none",
}
