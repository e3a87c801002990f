"""Posts' rules and the shapes its API speaks."""

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.fields import QueryInt, Trimmed, Uuid

MAX_PHOTOS_PER_POST = 20
MAX_BODY_LENGTH = 5000
EXCERPT_LENGTH = 140


class CreatePost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Trimmed before the length check: trailing newlines do not count against the limit.
    body: Annotated[str, Trimmed(MAX_BODY_LENGTH)] = Field(
        description=f"The message, plain text: {MAX_BODY_LENGTH} characters at most once trimmed."
    )
    photo_ids: list[Uuid] = Field(
        default_factory=list, max_length=MAX_PHOTOS_PER_POST, json_schema_extra={"uniqueItems": True}
    )

    @field_validator("photo_ids")
    @classmethod
    def unique(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("a photo is listed twice")
        return value


class PhotoRef(BaseModel):
    photo_id: uuid.UUID
    status: Literal["processing", "ready", "rejected"]


class PostView(BaseModel):
    post_id: uuid.UUID
    group_id: uuid.UUID
    group_name: str
    author_id: uuid.UUID
    body: str
    photos: list[PhotoRef]
    created_at: datetime


class FeedCursor(BaseModel):
    """Where a feed page ended: the last post's time and id (two posts can share a time)."""

    created_at: datetime
    post_id: uuid.UUID

    def encode(self) -> str:
        return base64.urlsafe_b64encode(self.model_dump_json().encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "FeedCursor":
        try:
            return cls.model_validate_json(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, binascii.Error):
            raise ValueError("not a cursor this feed handed out") from None


class FeedQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: QueryInt = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The previous page's next_cursor, as it was handed out.",
    )

    @field_validator("cursor")
    @classmethod
    def readable(cls, value: str | None) -> str | None:
        if value is not None:
            FeedCursor.decode(value)
        return value

    def position(self) -> FeedCursor | None:
        return FeedCursor.decode(self.cursor) if self.cursor else None


class FeedPage(BaseModel):
    posts: list[PostView]
    next_cursor: str | None


def excerpt(body: str) -> str:
    """The first words of a post for notifications, cut at a word boundary."""
    flat = " ".join(body.split())
    if len(flat) <= EXCERPT_LENGTH:
        return flat
    cut = flat[: EXCERPT_LENGTH - 1].rsplit(" ", 1)[0]
    return cut + "…"
