"""The weekly minimum's rules and shapes (seed rule 5: at least ``min_posts_per_week`` posts per group
per week, a school setting).

What counts: a group's own posts (not the school's announcements, not deleted ones), by the local day
of the school on which they appear (``posts.local_day``: a send-later post counts for the day, and so
the week, it appears in, even while it still waits). Weeks are ISO 8601 weeks, Monday to Sunday, of
the school's local calendar, so a week of a daylight-saving change has 167 or 169 hours.

Which groups: those of the school year that holds the school's local date (the group's
``year_starts_on``..``year_ends_on`` from GroupChanged); for a group copied before identity sent those
dates, one with a member now (identity derives memberships only in the current year).
"""

import uuid
from datetime import date, time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.fields import Matches

# The reminder's event id is derived from group and week, so that whatever runs the check twice (two
# replicas, a retried run, a restored database) names the same event and consumers handle it once.
QUIET_NAMESPACE = uuid.UUID("6f1d3c56-4a55-4be8-9a1e-3c1b3f0e2a71")

SchoolYear = Annotated[
    str, Matches(r"^[0-9]{4}-[0-9]{4}$", "a school year is written as two years, e.g. 2026-2027")
]


def quiet_event_id(group_id: uuid.UUID, week_starts_on: date) -> uuid.UUID:
    """The GroupQuiet id of a group and week (the week's Monday): the same on every run."""
    return uuid.uuid5(QUIET_NAMESPACE, f"{group_id}:{iso_week(week_starts_on)}")


def iso_week(day: date) -> str:
    """The ISO 8601 week ``day`` falls in, e.g. ``2026-W49`` (the year is the ISO week-year)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.isoweekday() - 1)


def check_offset(weekday: int, at: time) -> timedelta:
    """How far into the local week (from Monday 00:00) the check begins: ISO ``weekday`` (1 Monday ..
    7 Sunday) at local time ``at``. Compared with local wall-clock time, so DST does not shift it."""
    return timedelta(days=weekday - 1, hours=at.hour, minutes=at.minute, seconds=at.second)


class ReportQuery(BaseModel):
    """``?school_year=2026-2027`` (required) and ``?format=csv`` (or the Accept header text/csv)."""

    model_config = ConfigDict(extra="forbid")

    school_year: SchoolYear = Field(description="The school year, e.g. 2026-2027.")
    format: Literal["json", "csv"] | None = Field(
        default=None, description="csv for a spreadsheet; the Accept header text/csv does the same."
    )


class ReportWeek(BaseModel):
    """One group in one week of the school year."""

    group_id: uuid.UUID
    group_name: str
    week: str = Field(description="ISO 8601 week of the school's local calendar, e.g. 2026-W49.")
    week_starts_on: date = Field(description="The week's Monday (local date).")
    posts: int = Field(ge=0, description="The group's own posts that appeared (or will appear) that week.")
    min_posts_per_week: int = Field(ge=0, description="What the school asks (its setting now).")
    met: bool = Field(description="posts >= min_posts_per_week; for the current week: so far.")
    most_posts_on_one_day: int = Field(
        ge=0,
        description="The most posts of the group on one day that week, as the posts per day count them "
        "(sign-up posts left out), to set against max_posts_per_day.",
    )
    reminded: bool = Field(description="Whether the weekly check sent the group's teachers a reminder.")


class PostingReport(BaseModel):
    """Seed rule 5 kept or not, per group per week: every week of the school year that has begun
    (at most up to the year's last day), by group name and then week."""

    school_id: uuid.UUID
    school_year: str
    time_zone: str = Field(description="The zone the school's days and weeks are counted in.")
    max_posts_per_day: int
    min_posts_per_week: int
    weeks: list[ReportWeek]


CSV_COLUMNS = [
    "group",
    "week",
    "week_starts_on",
    "posts",
    "min_posts_per_week",
    "met",
    "most_posts_on_one_day",
    "reminded",
]


def csv_row(week: ReportWeek) -> list[str]:
    """A week as the CSV's cells, in CSV_COLUMNS' order; yes/no for the flags."""
    return [
        spreadsheet_text(week.group_name),
        week.week,
        week.week_starts_on.isoformat(),
        str(week.posts),
        str(week.min_posts_per_week),
        "yes" if week.met else "no",
        str(week.most_posts_on_one_day),
        "yes" if week.reminded else "no",
    ]


def spreadsheet_text(text: str) -> str:
    """Text a spreadsheet would take for a formula (=, +, -, @, or a tab/CR before one) kept as text
    with a leading apostrophe (OWASP's advice against CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
