"""What parents and teachers read: a post as a member sees it, the feed, likes, reads ("seen") and
the teacher's figures per post. The JSON of these shapes is built by the database (feed/store.py);
the models here document it (OpenAPI) and tests hold the SQL to them."""

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from posts.publishing.attachments import AttachmentRef
from posts.signups import SignupRef
from shared.fields import QueryInt


class PhotoRef(BaseModel):
    """A photo of a post, in the post's order; media serves it (to members) once ready."""

    photo_id: uuid.UUID
    status: Literal["processing", "ready", "rejected"] = Field(
        description="Shown to parents only when ready (media processed it)."
    )


class PostView(BaseModel):
    """A post as a member of its group sees it."""

    post_id: uuid.UUID
    group_id: uuid.UUID
    group_name: str
    author_id: uuid.UUID
    title: str = Field(description="May be empty.")
    body: str = Field(description="Plain text with paragraphs; clients render it, never as HTML.")
    urgent: bool
    photos: list[PhotoRef]
    attachments: list[AttachmentRef] = Field(description="Files (the newsletter PDF), in the post's order.")
    like_count: int = Field(ge=0)
    liked: bool = Field(description="Whether the caller likes it.")
    seen: bool = Field(description="Whether the caller has opened it.")
    published_at: datetime = Field(description="When it appeared for parents; the feed's order.")
    updated_at: datetime | None = Field(description="When it was last edited, if ever.")
    signup: SignupRef | None = Field(
        default=None,
        description="The sign-up the post announces (a conference schedule, a helper-parent list), if any.",
    )


class FeedCursor(BaseModel):
    """Where a page ended: the last post's appearance time and id (two posts can share a time)."""

    published_at: datetime
    post_id: uuid.UUID

    def encode(self) -> str:
        return base64.urlsafe_b64encode(self.model_dump_json().encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "FeedCursor":
        """Raises ValueError for anything this service did not hand out."""
        try:
            cursor = cls.model_validate_json(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, binascii.Error):
            raise ValueError("not a cursor this feed handed out") from None
        if cursor.published_at.tzinfo is None:
            raise ValueError("not a cursor this feed handed out")
        try:
            # Year 1 east of UTC or 9999 west of it has no UTC instant a query can carry: not ours.
            cursor.published_at.astimezone(UTC)
        except OverflowError:
            raise ValueError("not a cursor this feed handed out") from None
        return cursor


class FeedQuery(BaseModel):
    """``?limit=`` (1 to 100, default 20) and ``?cursor=`` (the previous page's next_cursor); 422 otherwise."""

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
    """A page of the feed, newest first."""

    posts: list[PostView]
    next_cursor: str | None = Field(description="Ask for the next page with it; null at the end.")


class LikeState(BaseModel):
    """The caller's like of a post after a like or unlike (seed rule 9), and the post's count."""

    post_id: uuid.UUID
    liked: bool
    like_count: int = Field(ge=0, description="Every account's likes, the caller's included.")


class DeliveryFigures(BaseModel):
    """What the notifier last reported of the messages about a post (DeliveryReport)."""

    targeted: int = Field(description="Accounts the post was to be sent to.")
    delivered_email: int
    delivered_push: int
    failed: int
    pending: int
    held: int = Field(description="Waiting for a digest or the end of quiet hours.")
    reported_at: datetime


class Families(BaseModel):
    """A family is a child of the group: seen when at least one of its guardians opened the post."""

    seen: int = Field(ge=0)
    total: int = Field(ge=0)


class GroupPostView(PostView):
    """A post with what its group's teachers see of it."""

    families: Families
    seen_by_count: int = Field(ge=0, description="Accounts (guardians) of the group that opened it.")
    liked_by: list[uuid.UUID] = Field(description="Accounts that like it, first like first.")
    delivery: DeliveryFigures | None = Field(description="Null until the notifier reports.")


class GroupPostsPage(BaseModel):
    """A page of a group's posts with the teachers' figures, newest first."""

    posts: list[GroupPostView]
    next_cursor: str | None
