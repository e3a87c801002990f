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
  school's time zone; a window may wrap midnight (21:00-07:00).
- An urgent post goes out at once on every channel (email and every device) whatever the person chose.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

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


@dataclass(frozen=True)
class QuietHours:
    starts: time
    ends: time

    def end_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The end of the window ``moment`` falls in (aware, UTC-comparable), or None when it falls
        outside. Local wall-clock times: a window over a DST change ends at the local ``ends``."""
        local = moment.astimezone(zone)
        clock = local.time().replace(tzinfo=None)
        if self.starts < self.ends:
            inside = self.starts <= clock < self.ends
            end_day = local.date()
        else:  # wraps midnight
            inside = clock >= self.starts or clock < self.ends
            end_day = local.date() + timedelta(days=1) if clock >= self.starts else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, self.ends, tzinfo=zone)


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
    (none so far; kept for kinds without a push form)."""
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
