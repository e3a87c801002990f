"""Schools, their settings, school years, groups, staff and teaching assignments: rules and shapes."""

import uuid
from datetime import date, datetime, time
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from identity.emails import EmailAddress
from shared.fields import Integral, Matches, Omittable, OneOf, QueryInt, Trimmed, omitted_not_null
from shared.pagination import PageQuery

# Two consecutive years, spelled out one by one so that the schema says exactly what is taken.
FIRST_SCHOOL_YEAR, LAST_SCHOOL_YEAR = 1990, 2099
SCHOOL_YEAR_PATTERN = (
    "^(?:" + "|".join(f"{y}-{y + 1}" for y in range(FIRST_SCHOOL_YEAR, LAST_SCHOOL_YEAR + 1)) + ")$"
)
# The IANA names of this machine's time zone database; "localtime" is a file of the system's, no zone name.
TIME_ZONES = frozenset(available_timezones()) - {"localtime"}
Locale = Literal["nl", "en"]
StaffRole = Literal["admin", "teacher"]
DEFAULT_SHARE_NOTICE = (
    "Deel foto's uit Klaspost niet met anderen: niet via sociale media en niet via een screenshot."
)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Patch(Input):
    """A PATCH body: each field may be left out (kept as it is); declare them ``Omittable[X] = None``
    so that an explicit null is refused too (422 naming the field), as the schema says. A field that
    null clears is declared ``X | None = None`` instead."""

    model_config = ConfigDict(json_schema_extra=omitted_not_null)


TimeZone = Annotated[
    str,
    OneOf(TIME_ZONES, "not a known IANA time zone, e.g. Europe/Amsterdam"),
    Field(examples=["Europe/Amsterdam"]),
]
SchoolYearName = Annotated[
    str,
    Matches(
        SCHOOL_YEAR_PATTERN,
        f"a school year is two consecutive years from {FIRST_SCHOOL_YEAR}-{FIRST_SCHOOL_YEAR + 1} "
        f"to {LAST_SCHOOL_YEAR}-{LAST_SCHOOL_YEAR + 1}, e.g. 2026-2027",
    ),
    Field(examples=["2026-2027"]),
]
GroupName = Annotated[str, Trimmed(80), Field(description="e.g. 'Groep 3B'")]
DisplayName = Annotated[str, Trimmed(120)]
SchoolName = Annotated[str, Trimmed(200)]
# As identity.passwords checks them (MIN_LENGTH, MAX_LENGTH); the common-password list is checked
# beyond the schema (a documented 422).
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=10, max_length=128)]


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
    password: Password | None = None
    locale: Locale = "nl"


class CreateSchool(Input):
    name: SchoolName
    time_zone: TimeZone = "Europe/Amsterdam"
    locale: Locale = "nl"
    admin: NewAdmin


class SchoolCreated(BaseModel):
    school_id: uuid.UUID
    admin_id: uuid.UUID


class SchoolSettings(Patch):
    """What an admin may change; every field optional (PATCH). Defaults come from the seed's policy."""

    name: Omittable[SchoolName] = None
    time_zone: Omittable[TimeZone] = None
    locale: Omittable[Locale] = None
    max_posts_per_day: Omittable[Annotated[int, Field(ge=1, le=10), Integral]] = Field(
        default=None, description="Seed rule 5: at most this many posts per group per day."
    )
    min_posts_per_week: Omittable[Annotated[int, Field(ge=0, le=7), Integral]] = Field(
        default=None, description="Seed rule 5: at least this many posts per group per week."
    )
    digest_time: Omittable[time] = Field(default=None, description="Local time of the daily digest email.")
    photo_retention_days: Omittable[Annotated[int, Field(ge=0, le=3650), Integral]] = Field(
        default=None,
        description="Days after the end of a school year that its photos are kept.",
    )
    share_notice: Omittable[Annotated[str, Trimmed(500)]] = None
    watermark_photos: Omittable[bool] = Field(
        default=None,
        description="Seed rule 6: put a visible 'do not share' mark with the school's name on every photo.",
    )
    access_code_days: Omittable[Annotated[int, Field(ge=1, le=90), Integral]] = Field(
        default=None, description="Days an access code is valid."
    )
    reminder_days: Omittable[Annotated[int, Field(ge=1, le=60), Integral]] = Field(
        default=None, description="Days between reminders of a pending invitation."
    )
    max_reminders: Omittable[Annotated[int, Field(ge=0, le=10), Integral]] = None


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
    watermark_photos: bool
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


class RenameGroup(Patch):
    name: GroupName


class GroupView(BaseModel):
    group_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    school_year: str
    school_year_id: uuid.UUID
    teachers: list[uuid.UUID] = Field(default_factory=list)
    children: int = Field(default=0, description="Children placed in the group.")


class Paging(PageQuery):
    """A page of a list: ``limit`` read as the schema has it (decimal digits, not " 5" or "5.0")."""

    limit: QueryInt = Field(default=50, ge=1, le=200)


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
