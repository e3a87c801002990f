"""Schools, their settings, school years, groups, staff and teaching assignments: rules and shapes."""

import re
import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from identity.emails import EmailAddress

SCHOOL_YEAR_PATTERN = r"^(\d{4})-(\d{4})$"
_SCHOOL_YEAR = re.compile(SCHOOL_YEAR_PATTERN)
Locale = Literal["nl", "en"]
StaffRole = Literal["admin", "teacher"]
DEFAULT_SHARE_NOTICE = (
    "Deel foto's uit Klaspost niet met anderen: niet via sociale media en niet via een screenshot."
)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known IANA time zone, e.g. Europe/Amsterdam") from None
    return name


def _school_year(name: str) -> str:
    match = _SCHOOL_YEAR.match(name)
    if not match or int(match.group(2)) != int(match.group(1)) + 1:
        raise ValueError("a school year looks like 2026-2027")
    return name


TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["Europe/Amsterdam"]),
    AfterValidator(_time_zone),
]
SchoolYearName = Annotated[
    str, Field(pattern=SCHOOL_YEAR_PATTERN, examples=["2026-2027"]), AfterValidator(_school_year)
]
GroupName = Annotated[str, Field(min_length=1, max_length=80, description="e.g. 'Groep 3B'")]
DisplayName = Annotated[str, Field(min_length=1, max_length=120)]


def default_dates(name: str) -> tuple[date, date]:
    """A Dutch school year by default: 1 August of its first year to 31 July of its second."""
    first, second = (int(part) for part in name.split("-"))
    return date(first, 8, 1), date(second, 7, 31)


def known_time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


class NewAdmin(Input):
    email: EmailAddress
    display_name: DisplayName
    # Optional: without one, the admin gets a mail to set their own (as every staff member does).
    password: str | None = Field(default=None, min_length=10, max_length=128)
    locale: Locale = "nl"


class CreateSchool(Input):
    name: str = Field(min_length=1, max_length=200)
    time_zone: TimeZone = "Europe/Amsterdam"
    locale: Locale = "nl"
    admin: NewAdmin


class SchoolCreated(BaseModel):
    school_id: uuid.UUID
    admin_id: uuid.UUID


class SchoolSettings(Input):
    """What an admin may change; every field optional (PATCH). Defaults come from the seed's policy."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    time_zone: TimeZone | None = None
    locale: Locale | None = None
    max_posts_per_day: int | None = Field(
        default=None, ge=1, le=10, description="Seed rule 5: at most this many posts per group per day."
    )
    min_posts_per_week: int | None = Field(
        default=None, ge=0, le=7, description="Seed rule 5: at least this many posts per group per week."
    )
    digest_time: time | None = Field(default=None, description="Local time of the daily digest email.")
    photo_retention_days: int | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="Days after the end of a school year that its photos are kept.",
    )
    share_notice: str | None = Field(default=None, min_length=1, max_length=500)
    access_code_days: int | None = Field(
        default=None, ge=1, le=90, description="Days an access code is valid."
    )
    reminder_days: int | None = Field(
        default=None, ge=1, le=60, description="Days between reminders of a pending invitation."
    )
    max_reminders: int | None = Field(default=None, ge=0, le=10)


class SchoolView(BaseModel):
    school_id: uuid.UUID
    name: str
    time_zone: str
    locale: Locale
    max_posts_per_day: int
    min_posts_per_week: int
    digest_time: time
    photo_retention_days: int
    share_notice: str
    access_code_days: int
    reminder_days: int
    max_reminders: int
    current_school_year: str | None
    invitations_launched_at: datetime | None


class CreateSchoolYear(Input):
    name: SchoolYearName
    starts_on: date | None = Field(default=None, description="First day (local date); default 1 August.")
    ends_on: date | None = Field(default=None, description="Last day (local date); default 31 July.")

    @model_validator(mode="after")
    def ordered(self) -> "CreateSchoolYear":
        starts, ends = self.dates()
        if ends <= starts:
            raise ValueError("ends_on must be after starts_on")
        if (ends - starts).days > 400:
            raise ValueError("a school year lasts at most 400 days")
        return self

    def dates(self) -> tuple[date, date]:
        default_start, default_end = default_dates(self.name)
        return self.starts_on or default_start, self.ends_on or default_end


class SchoolYearView(BaseModel):
    school_year_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    starts_on: date
    ends_on: date
    current: bool


class CreateGroup(Input):
    name: GroupName
    school_year: SchoolYearName


class RenameGroup(Input):
    name: GroupName


class GroupView(BaseModel):
    group_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    school_year: str
    school_year_id: uuid.UUID
    teachers: list[uuid.UUID] = Field(default_factory=list)
    children: int = Field(default=0, description="Children placed in the group.")


class GroupQuery(Input):
    school_year: SchoolYearName | None = Field(default=None, description="Default: the current year.")


class AddStaff(Input):
    email: EmailAddress
    display_name: DisplayName
    role: StaffRole
    locale: Locale = "nl"


class StaffView(BaseModel):
    person_id: uuid.UUID
    email: str
    display_name: str
    roles: list[StaffRole]


class TeachingView(BaseModel):
    group_id: uuid.UUID
    person_id: uuid.UUID
