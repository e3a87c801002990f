"""Posts' rules and the shapes its API speaks."""

import base64
import binascii
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_PHOTOS_PER_POST = 20
EXCERPT_LENGTH = 140


class CreatePost(BaseModel):
    # Stripped before the length checks: trailing newlines do not count against the limit.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    body: str = Field(min_length=1, max_length=5000, description="The message, plain text.")
    photo_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_PHOTOS_PER_POST)

    @field_validator("body")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        return value.strip()

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

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=200, description="The previous page's next_cursor.")

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
