"""Publishing's rules and shapes: writing, editing and deleting posts, "send later", announcements,
and the posting policy's day (seed rule 5: at most N posts per group per calendar day of the school)."""

import uuid
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from posts.publishing.attachments import MAX_ATTACHMENTS_PER_POST, AttachmentRef
from shared.fields import Trimmed, Uuid

MAX_TITLE_LENGTH = 120
MAX_BODY_LENGTH = 5000
MAX_PHOTOS_PER_POST = 20
MAX_ANNOUNCEMENT_GROUPS = 200
EXCERPT_LENGTH = 140
# Send later is for the evening before: within this, so that photos uploaded for the post are attached
# before media's clean-up deletes uploads no post has used for a day.
SEND_LATER_AT_MOST = timedelta(hours=20)
# The send-later job looks this often for due posts: a post appears within this of its time.
PUBLISH_EVERY_SECONDS = 10.0
DEFAULT_MAX_POSTS_PER_DAY = 1
DEFAULT_TIME_ZONE = "Europe/Amsterdam"

Title = Annotated[str, Trimmed(MAX_TITLE_LENGTH)]
# Trimmed before the length check: trailing newlines do not count against the limit. Plain text:
# paragraphs are blank lines, links are written out; clients render it as text, never as HTML.
Body = Annotated[str, Trimmed(MAX_BODY_LENGTH)]


# An edit's field left out is kept: its default is never read (see UpdatePost), nor shown as null.
_LEFT_OUT: Any = None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _no_default_unique(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema["uniqueItems"] = True


def _unique(value: list[uuid.UUID]) -> list[uuid.UUID]:
    if len(set(value)) != len(value):
        raise ValueError("an id is listed twice")
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give the time with its offset, e.g. 2026-12-01T07:30:00+01:00")
    return value


class CreatePost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title = Field(description=f"{MAX_TITLE_LENGTH} characters at most once trimmed.")
    body: Body = Field(
        description=f"Plain text (paragraphs, links written out): {MAX_BODY_LENGTH} characters at most once trimmed."
    )
    photo_ids: list[Uuid] = Field(
        default_factory=list, max_length=MAX_PHOTOS_PER_POST, json_schema_extra={"uniqueItems": True}
    )
    publish_at: datetime | None = Field(
        default=None,
        description="Send later: the post appears and parents are notified at this time (with offset), "
        "in the future and at most 20 hours ahead. Counts for the school day it appears on.",
    )
    urgent: bool = Field(
        default=False, description="School admins only: parents are notified at once on every channel."
    )
    attachment_ids: list[Uuid] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS_PER_POST,
        json_schema_extra={"uniqueItems": True},
        description="Files (the newsletter PDF) the writer uploaded to media for this group, in order.",
    )

    @field_validator("photo_ids", "attachment_ids")
    @classmethod
    def unique_photos(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        return _unique(value)

    @field_validator("publish_at")
    @classmethod
    def with_offset(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class CreateAnnouncement(CreatePost):
    """One announcement of the school to many groups: one post per group, photos not included (a photo
    belongs to one group's post); attachments uploaded for the school go to every group."""

    photo_ids: list[Uuid] = Field(
        default_factory=list, max_length=0, description="Announcements carry no photos."
    )
    attachment_ids: list[Uuid] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS_PER_POST,
        json_schema_extra={"uniqueItems": True},
        description="Files (the school's newsletter PDF) the writer uploaded to media for the school "
        "(POST /schools/{school_id}/attachments), in order: one stored file for every group's post.",
    )
    group_ids: list[Uuid] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ANNOUNCEMENT_GROUPS,
        json_schema_extra={"uniqueItems": True},
        description="The groups to post to; all groups of the school's current year when left out.",
    )

    @field_validator("group_ids")
    @classmethod
    def unique_groups(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID] | None:
        return None if value is None else _unique(value)


class UpdatePost(BaseModel):
    """What an edit may change; what is left out stays (``{}`` changes nothing). None may be null.
    Nobody is notified again. Read the fields given from ``model_fields_set``."""

    model_config = ConfigDict(extra="forbid")

    title: Title = Field(default=_LEFT_OUT, json_schema_extra=_no_default)
    body: Body = Field(default=_LEFT_OUT, json_schema_extra=_no_default)
    photo_ids: list[Uuid] = Field(
        default=_LEFT_OUT,
        max_length=MAX_PHOTOS_PER_POST,
        json_schema_extra=_no_default_unique,
        description="The post's photos from now on, in order; [] removes them.",
    )
    attachment_ids: list[Uuid] = Field(
        default=_LEFT_OUT,
        max_length=MAX_ATTACHMENTS_PER_POST,
        json_schema_extra=_no_default_unique,
        description="The post's attachments from now on, in order; [] removes them (media deletes them).",
    )

    @field_validator("photo_ids", "attachment_ids")
    @classmethod
    def unique_photos(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        return _unique(value)


class PhotoRef(BaseModel):
    photo_id: uuid.UUID
    status: Literal["processing", "ready", "rejected"]


class WrittenPost(BaseModel):
    """A post as its writers (the group's teachers, the school's admins) see it, scheduled or not."""

    post_id: uuid.UUID
    group_id: uuid.UUID
    group_name: str
    author_id: uuid.UUID
    title: str
    body: str
    urgent: bool
    announcement_id: uuid.UUID | None
    photos: list[PhotoRef]
    attachments: list[AttachmentRef] = Field(default_factory=list)
    status: Literal["scheduled", "published"]
    created_at: datetime
    publish_at: datetime | None = Field(description="The send-later time, when one was given.")
    published_at: datetime | None = Field(description="When parents got it; null while scheduled.")
    updated_at: datetime | None


class ScheduledList(BaseModel):
    posts: list[WrittenPost]


class AnnouncementView(BaseModel):
    announcement_id: uuid.UUID
    posts: list[WrittenPost]


def excerpt(body: str) -> str:
    """The first words of a post for notifications, cut at a word boundary."""
    flat = " ".join(body.split())
    if len(flat) <= EXCERPT_LENGTH:
        return flat
    cut = flat[: EXCERPT_LENGTH - 1].rsplit(" ", 1)[0]
    return cut + "…"


def local_day(instant: datetime, time_zone: str) -> date:
    """The calendar day in the school's zone on which ``instant`` (aware) falls: what the posting
    policy counts by. Daylight-saving changes are the zone database's business (zoneinfo)."""
    return instant.astimezone(ZoneInfo(time_zone)).date()


def next_local_midnight(day: date, time_zone: str) -> datetime:
    """The first instant of the day after ``day`` in the zone, as an aware time in that zone. Where a
    zone skips midnight itself, the first instant after the gap (zoneinfo maps a skipped time forward)."""
    zone = ZoneInfo(time_zone)
    midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return midnight.astimezone(ZoneInfo("UTC")).astimezone(zone)


def check_publish_at(publish_at: datetime, now: datetime) -> str | None:
    """Why a send-later time is not acceptable, or None."""
    if publish_at <= now:
        return "the send-later time has passed; leave it out to post now"
    if publish_at - now > SEND_LATER_AT_MOST:
        return "send later reaches at most 20 hours ahead"
    return None
