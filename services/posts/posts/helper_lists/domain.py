"""Helper-parent lists (hulpouders, seed rule 7): a teacher's list of items with a capacity each
("4 drivers for the excursion on 12 June"), parents signing up until the deadline, a waiting list per
item. The rules and shapes; the SQL is in store.py, who may do what in api.py.

What a parent sees: per item the capacity, how many signed up and wait, and their own state (with
their place in line). Never other families' names: the issue's rule for sign-ups ("a parent never
sees another family's booking details") and the AVG/GDPR's data minimisation; a school that wants
drivers to find each other puts them in touch itself. The group's teachers see who signed up and
who waits, by name.
"""

import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.fields import Trimmed

MAX_TITLE_LENGTH = 120  # SignupPromoted carries list and item titles of at most 120 characters
MAX_DESCRIPTION_LENGTH = 2000
MAX_ITEMS = 30
MAX_CAPACITY = 100
# A list is for this school year's activities: a deadline further ahead is a typo.
DEADLINE_AT_MOST = timedelta(days=366)

Title = Annotated[str, Trimmed(MAX_TITLE_LENGTH)]
Description = Annotated[str, Trimmed(MAX_DESCRIPTION_LENGTH)]
Capacity = Annotated[int, Field(ge=1, le=MAX_CAPACITY, description=f"Places, 1 to {MAX_CAPACITY}.")]
SignupState = Literal["signed_up", "waiting"]
ListStatus = Literal["open", "deadline_passed", "closed"]

# An edit's field left out is kept: its default is never read (see UpdateItem), nor shown as null.
_LEFT_OUT: Any = None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


# Days outside these cannot be turned into instants in every zone (Python's datetime ends at years 1
# and 9999): refused as typos, not a 500.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(9000, 1, 1)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("give the time with its offset, e.g. 2027-06-10T18:00:00+02:00")
    return value


def _in_range(value: date | None) -> date | None:
    if value is not None and not EARLIEST_DAY <= value < LATEST_DAY:
        raise ValueError(f"give a day between {EARLIEST_DAY.year} and {LATEST_DAY.year}")
    return value


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title = Field(description=f"What is asked, e.g. 'Rijden'; {MAX_TITLE_LENGTH} characters at most.")
    capacity: Capacity


class CreateHelperList(BaseModel):
    """A teacher's list for their group. ``deadline`` with its offset (the school's local time, e.g.
    2027-06-10T18:00:00+02:00); it must lie ahead, within the school year, and not after the start of
    the activity's day when ``activity_on`` is given (checked in the school's time zone: 422)."""

    model_config = ConfigDict(extra="forbid")

    title: Title = Field(description=f"{MAX_TITLE_LENGTH} characters at most once trimmed.")
    description: Description | None = Field(
        default=None, description=f"Plain text, {MAX_DESCRIPTION_LENGTH} characters at most."
    )
    activity_on: date | None = Field(
        default=None, description="The activity's day (school-local), when it is on one day."
    )
    deadline: datetime = Field(description="Parents sign up and withdraw until then.")
    items: list[NewItem] = Field(min_length=1, max_length=MAX_ITEMS)

    @field_validator("deadline")
    @classmethod
    def aware(cls, value: datetime) -> datetime:
        return _aware(value)

    @field_validator("activity_on")
    @classmethod
    def in_range(cls, value: date | None) -> date | None:
        return _in_range(value)

    @field_validator("items")
    @classmethod
    def distinct_titles(cls, value: list[NewItem]) -> list[NewItem]:
        titles = [item.title.casefold() for item in value]
        if len(set(titles)) != len(titles):
            raise ValueError("two items have the same title")
        return value


class UpdateHelperList(BaseModel):
    """What a teacher may change of a list; what is left out stays (``{}`` changes nothing). A new
    deadline is checked as a new list's is (422); ``activity_on`` null takes the activity's day away,
    ``description`` null the description. The list's post in the feed follows its title and text."""

    model_config = ConfigDict(extra="forbid")

    title: Title = Field(default=_LEFT_OUT, json_schema_extra=_no_default)
    description: Description | None = Field(default=_LEFT_OUT, json_schema_extra=_no_default)
    activity_on: date | None = Field(default=_LEFT_OUT, json_schema_extra=_no_default)
    deadline: datetime = Field(default=_LEFT_OUT, json_schema_extra=_no_default)

    @field_validator("deadline")
    @classmethod
    def aware(cls, value: datetime) -> datetime:
        return _aware(value)

    @field_validator("activity_on")
    @classmethod
    def in_range(cls, value: date | None) -> date | None:
        return _in_range(value)


class UpdateItem(BaseModel):
    """What a teacher may change of an item; what is left out stays (``{}`` changes nothing). A higher
    capacity moves the first waiting parents up; a capacity below the parents signed up is refused (409)."""

    model_config = ConfigDict(extra="forbid")

    title: Title = Field(default=_LEFT_OUT, json_schema_extra=_no_default)
    capacity: Capacity = Field(default=_LEFT_OUT, json_schema_extra=_no_default)


class ItemView(BaseModel):
    """An item as a member of the group sees it: figures and the caller's own state only."""

    item_id: uuid.UUID
    title: str
    capacity: int = Field(ge=1)
    signed_up: int = Field(ge=0, description="Parents holding a place.")
    waiting: int = Field(ge=0, description="Parents on the waiting list.")
    mine: SignupState | None = Field(description="The caller's sign-up for this item, if any.")
    place_in_line: int | None = Field(description="1 for the first on the waiting list; null unless waiting.")


class HelperListView(BaseModel):
    list_id: uuid.UUID
    group_id: uuid.UUID
    group_name: str
    school_year: str
    author_id: uuid.UUID
    title: str
    description: str = Field(description="May be empty.")
    activity_on: date | None
    deadline: datetime = Field(description="In the school's time zone.")
    time_zone: str = Field(description="The school's, IANA name.")
    status: ListStatus = Field(
        description="open: parents sign up and withdraw; deadline_passed or closed (early, by a teacher): "
        "no changes by parents."
    )
    closed_at: datetime | None
    created_at: datetime
    items: list[ItemView]


class HelperListsPage(BaseModel):
    """A group's lists, newest first."""

    lists: list[HelperListView]


class Helper(BaseModel):
    """A parent on an item, as the group's teachers see them."""

    person_id: uuid.UUID
    display_name: str | None = Field(description="Null until posts has heard the account's name.")
    children: list[str] = Field(description="Their children in the group, by name: which family helps.")
    signed_at: datetime
    promoted_at: datetime | None = Field(description="When they moved up from the waiting list.")


class ItemSignups(BaseModel):
    item_id: uuid.UUID
    title: str
    capacity: int = Field(ge=1)
    signed_up: list[Helper] = Field(description="In order of signing up.")
    waiting: list[Helper] = Field(description="The waiting list, first in line first.")


class HelperListSignups(BaseModel):
    """Who signed up and who waits, per item: for the group's teachers."""

    list_id: uuid.UUID
    title: str
    status: ListStatus
    items: list[ItemSignups]


def day_start(day: date, time_zone: str) -> datetime:
    """The first instant of ``day`` in the zone (aware)."""
    zone = ZoneInfo(time_zone)
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(ZoneInfo("UTC")).astimezone(zone)


def deadline_problem(
    deadline: datetime, activity_on: date | None, now: datetime, time_zone: str, year_ends_on: date | None
) -> str | None:
    """Why a list's deadline is not acceptable, or None. Days (the activity's, the school year's last,
    when known) are the school's local days: a list ends with its school year."""
    if deadline <= now:
        return "the deadline has passed; give one ahead"
    if deadline - now > DEADLINE_AT_MOST:
        return "the deadline is more than a year ahead"
    if year_ends_on is not None and deadline >= day_start(year_ends_on + timedelta(days=1), time_zone):
        return f"the deadline is after the school year's last day ({year_ends_on.isoformat()})"
    if activity_on is not None and deadline > day_start(activity_on, time_zone):
        return f"the deadline is after the activity's day begins ({activity_on.isoformat()}, {time_zone})"
    return None


def announcement_body(description: str, items: list[tuple[str, int]]) -> str:
    """The text of the list's post in the feed: its description, or its items with their places."""
    return description or "\n".join(f"{title} ({capacity})" for title, capacity in items)


def list_status(deadline: datetime, closed_at: datetime | None, now: datetime) -> ListStatus:
    if closed_at is not None:
        return "closed"
    return "open" if now < deadline else "deadline_passed"


def local(instant: datetime, time_zone: str) -> datetime:
    """``instant`` shown in the school's zone."""
    return instant.astimezone(ZoneInfo(time_zone))
