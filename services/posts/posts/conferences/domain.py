"""Parent-teacher conferences (oudergesprekken, seed rule 7): the shapes of schedules, slots and
bookings, and the rules that turn a teacher's days and time ranges into slots.

A schedule is given in the school's local time (its time zone, from posts' school copy): days, time
ranges on each day, a slot length and a break between slots. Each range holds a whole number of
slots, a break after each but the last: ``(range + break) % (slot + break) == 0``. Slots are stored as
instants (UTC), so a day on either side of a daylight-saving change keeps its local times.

Booking rules (enforced in api.py and the database):
- a child has at most one booking per schedule, a slot at most one booking (unique constraints);
- guardians book for their own children of the schedule's groups, from ``opens_at`` (families with
  several children from ``early_opens_at``) until ``closes_at``; they move or cancel until
  ``change_deadline``; the group's teachers and the school's admins book, move and cancel on a
  family's behalf at any time;
- a parent sees other families' bookings only as "taken".
"""

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.fields import JsonInt, Trimmed, TrimmedOrEmpty, Uuid

MAX_TITLE_LENGTH = 120
MAX_LOCATION_LENGTH = 200
MAX_GROUPS = 50
MAX_DAYS = 31
MAX_RANGES_PER_DAY = 8
MAX_SLOTS = 2000
MAX_CHILDREN = 1000
# The "not booked yet" reminder goes this long before the booking window closes.
REMINDER_BEFORE_CLOSE = timedelta(days=2)
# The reminder job looks this often.
REMIND_EVERY_SECONDS = 300.0

Title = Annotated[str, Trimmed(MAX_TITLE_LENGTH)]
Location = Annotated[str, TrimmedOrEmpty(MAX_LOCATION_LENGTH)]


def _unique(value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("an id is listed twice")
    return value


# Times and days outside these cannot be shown in every zone (Python's datetime ends at years 1 and
# 9999, and a school west or east of UTC shifts them past that): refused as typos, not a 500.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give the time with its offset, e.g. 2027-03-22T08:00:00+01:00")
    if value is not None and not EARLIEST <= value < LATEST:
        raise ValueError(f"give a time between {EARLIEST.year} and {LATEST.year}")
    return value


class TimeRange(BaseModel):
    """A range of one day in the school's local time, e.g. 15:00 to 17:00."""

    model_config = ConfigDict(extra="forbid")

    start: time = Field(description="Local time HH:MM, when the first slot starts.")
    end: time = Field(description="Local time HH:MM, when the last slot ends.")


class ConferenceDay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date = Field(description="A day in the school's calendar, YYYY-MM-DD.")
    ranges: list[TimeRange] = Field(min_length=1, max_length=MAX_RANGES_PER_DAY)

    @field_validator("date")
    @classmethod
    def in_range(cls, value: dt.date) -> dt.date:
        if not EARLIEST.date() <= value < LATEST.date():
            raise ValueError(f"give a day between {EARLIEST.year} and {LATEST.year}")
        return value


class CreateSchedule(BaseModel):
    """A conference schedule for one or more groups of one school year (teachers of every group
    named, or an admin of the school). 422 naming the field for overlapping ranges, a range that is
    not a whole number of slots, an inverted window, or deadlines after the first conference."""

    model_config = ConfigDict(extra="forbid")

    group_ids: list[Uuid] = Field(
        min_length=1, max_length=MAX_GROUPS, json_schema_extra={"uniqueItems": True}
    )
    title: Title = Field(description=f"{MAX_TITLE_LENGTH} characters at most once trimmed.")
    location: Location = Field(default="", description="Where, e.g. 'Lokaal 3B'.")
    days: list[ConferenceDay] = Field(min_length=1, max_length=MAX_DAYS)
    slot_minutes: Annotated[int, Field(ge=1, le=240), JsonInt] = Field(description="Length of a slot.")
    break_minutes: Annotated[int, Field(ge=0, le=240), JsonInt] = Field(
        default=0, description="Between two slots of a range."
    )
    child_ids: list[Uuid] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CHILDREN,
        json_schema_extra={"uniqueItems": True},
        description="The children it is for; every child of the groups when left out.",
    )
    opens_at: datetime = Field(description="When families may book (with offset).")
    early_opens_at: datetime | None = Field(
        default=None,
        description="When families with several children at the school may book, before opens_at.",
    )
    closes_at: datetime = Field(description="When booking ends; at the latest when the first slot starts.")
    change_deadline: datetime = Field(
        description="Until when families move or cancel; at the latest when the first slot starts."
    )

    @field_validator("group_ids", "child_ids")
    @classmethod
    def unique_ids(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return _unique(value)

    @field_validator("opens_at", "early_opens_at", "closes_at", "change_deadline")
    @classmethod
    def with_offset(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class BookSlot(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_id: Uuid
    child_id: Uuid = Field(description="The child the conference is about (a guardian's own child).")


class MoveBooking(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot_id: Uuid = Field(description="A free slot of the same schedule.")


SlotState = Literal["free", "taken", "yours"]


class SlotView(BaseModel):
    """A slot as a family sees it: another family's booking is only "taken"."""

    slot_id: uuid.UUID
    starts_at: datetime = Field(description="In the school's time zone (its offset that day).")
    ends_at: datetime
    state: SlotState
    booking_id: uuid.UUID | None = Field(description="Yours only.")
    child_id: uuid.UUID | None = Field(description="Yours only: the child it is booked for.")


class ScheduleView(BaseModel):
    schedule_id: uuid.UUID
    school_id: uuid.UUID
    school_year: str
    time_zone: str = Field(description="The school's IANA time zone; every time is given in it.")
    group_ids: list[uuid.UUID]
    title: str
    location: str
    slot_minutes: int
    break_minutes: int
    opens_at: datetime
    early_opens_at: datetime | None
    closes_at: datetime
    change_deadline: datetime
    created_at: datetime
    slots: list[SlotView]


class BookingView(BaseModel):
    booking_id: uuid.UUID
    schedule_id: uuid.UUID
    slot_id: uuid.UUID
    child_id: uuid.UUID
    child_name: str = Field(
        description="The child's given name (full name in the staff's overview); empty until posts has it."
    )
    group_id: uuid.UUID
    title: str
    location: str
    starts_at: datetime
    ends_at: datetime
    booked_by: uuid.UUID
    booked_at: datetime
    moved_at: datetime | None


class ChildSchedule(BaseModel):
    """One of the caller's children with one schedule: a family sees these side by side."""

    child_id: uuid.UUID
    child_name: str
    group_id: uuid.UUID
    opens_for_you_at: datetime = Field(description="early_opens_at for families with several children.")
    booking: BookingView | None
    schedule: ScheduleView


class MySchedules(BaseModel):
    """The caller's children's schedules, soonest first: across groups and teachers."""

    several_children: bool = Field(description="Whether the early window applies to the caller.")
    schedules: list[ChildSchedule]


class ChildRef(BaseModel):
    child_id: uuid.UUID
    child_name: str = Field(description="Given and family name; empty until posts has the name.")
    group_id: uuid.UUID


class TeacherSlot(BaseModel):
    slot_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    booking: BookingView | None


class NotBooked(ChildRef):
    guardian_ids: list[uuid.UUID]


class ScheduleOverview(BaseModel):
    """The teacher's view: every slot with the child's name, and the families that have not booked."""

    schedule: ScheduleView
    slots: list[TeacherSlot]
    not_booked: list[NotBooked]


class CalendarFeedView(BaseModel):
    """A personal calendar feed: subscribe to ``url`` in a calendar app. The token is shown once."""

    feed_id: uuid.UUID
    url: str = Field(description="Path of the feed on this service; anyone with it can read it.")
    token: str
    created_at: datetime


class CalendarFeedRef(BaseModel):
    feed_id: uuid.UUID
    created_at: datetime


class CalendarFeedList(BaseModel):
    feeds: list[CalendarFeedRef]


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str

    def as_detail(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


def _instant(day: date, at: time, zone: ZoneInfo) -> datetime | None:
    """The instant of a local time, or None when the zone skips it (the spring-forward gap)."""
    local = datetime.combine(day, at, tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


def plan_slots(
    command: CreateSchedule, time_zone: str
) -> tuple[list[tuple[datetime, datetime]], list[Problem]]:
    """The slots (start, end instants, in order) of the schedule's days and ranges, and every problem
    found with the days, ranges and times (empty when it is acceptable)."""
    zone = ZoneInfo(time_zone)
    slot, pause = command.slot_minutes, command.break_minutes
    problems: list[Problem] = []
    slots: list[tuple[datetime, datetime]] = []
    seen_days: set[date] = set()
    for d, day in enumerate(command.days):
        if day.date in seen_days:
            problems.append(Problem(f"days.{d}.date", "this day is listed twice; give all its ranges once"))
        seen_days.add(day.date)
        spans: list[tuple[int, int, int]] = []
        for r, span in enumerate(day.ranges):
            where = f"days.{d}.ranges.{r}"
            start = span.start.hour * 60 + span.start.minute
            end = span.end.hour * 60 + span.end.minute
            if span.start.second or span.end.second or span.start.microsecond or span.end.microsecond:
                problems.append(Problem(where, "give times in whole minutes (HH:MM)"))
                continue
            if span.start.tzinfo is not None or span.end.tzinfo is not None:
                problems.append(Problem(where, "give local times without an offset (HH:MM)"))
                continue
            if end <= start:
                problems.append(Problem(where, "the range ends before it starts (or has no length)"))
                continue
            if (end - start + pause) % (slot + pause):
                problems.append(
                    Problem(
                        where,
                        f"{end - start} minutes is not a whole number of slots of {slot} minutes"
                        + (f" with {pause}-minute breaks between them" if pause else ""),
                    )
                )
                continue
            spans.append((start, end, r))
        spans.sort()
        for (_, end_a, r_a), (start_b, _, r_b) in itertools.pairwise(spans):
            if start_b < end_a:
                problems.append(Problem(f"days.{d}.ranges.{r_b}", f"overlaps range {r_a} of the same day"))
        for start, end, r in spans:
            minute = start
            while minute + slot <= end and len(slots) <= MAX_SLOTS:  # past the most, counting is enough
                begins = _instant(day.date, time(minute // 60, minute % 60), zone)
                finish = minute + slot
                ends = (
                    _instant(day.date, time(finish // 60, finish % 60), zone)
                    if finish < 24 * 60
                    else _instant(day.date + timedelta(days=1), time(0), zone)
                )
                if begins is None or ends is None:
                    problems.append(
                        Problem(
                            f"days.{d}.ranges.{r}", f"that time does not exist on {day.date} in {time_zone}"
                        )
                    )
                    break
                if ends - begins != timedelta(minutes=slot):  # the clock is changed during the slot
                    problems.append(
                        Problem(
                            f"days.{d}.ranges.{r}",
                            f"daylight saving changes the clock during this range on {day.date} in {time_zone}: "
                            f"a slot would not last {slot} minutes",
                        )
                    )
                    break
                slots.append((begins, ends))
                minute += slot + pause
    if len(slots) > MAX_SLOTS:
        problems.append(Problem("days", f"more than {MAX_SLOTS} slots; a schedule holds at most {MAX_SLOTS}"))
    slots.sort()
    problems.extend(check_times(command, slots[0][0] if slots else None))
    return slots, problems


def check_times(command: CreateSchedule, first_slot: datetime | None) -> list[Problem]:
    """The booking window and the move/cancel deadline against each other and the first slot."""
    problems: list[Problem] = []
    if command.closes_at <= command.opens_at:
        problems.append(Problem("closes_at", "the booking window closes before it opens"))
    if command.early_opens_at is not None and command.early_opens_at >= command.opens_at:
        problems.append(Problem("early_opens_at", "the early window must open before opens_at"))
    if first_slot is not None:
        if command.closes_at > first_slot:
            problems.append(Problem("closes_at", "booking must close by the first conference"))
        if command.change_deadline > first_slot:
            problems.append(
                Problem("change_deadline", "the deadline to move or cancel is after the first conference")
            )
    return problems


def in_zone(instant: datetime, time_zone: str) -> datetime:
    """An instant as the school's local time with that day's offset."""
    return instant.astimezone(ZoneInfo(time_zone))


def full_name(names: tuple[str, str] | None) -> str:
    return " ".join(n for n in names if n) if names else ""


def given_name(names: tuple[str, str] | None) -> str:
    return names[0] if names else ""
