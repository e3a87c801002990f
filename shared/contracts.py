"""Every event type of Klaspost, in one place, so producers and consumers agree on the shape.

Routing key = event type. Types are named in the past tense after what happened.
"""

import uuid
from typing import Literal

from pydantic import Field

from shared.envelope import Event, register

Role = Literal["admin", "teacher", "guardian"]
Locale = Literal["nl", "en"]


@register
class PersonRegistered(Event):
    """A person got an account at a school. The notifier keeps the contact address from it."""

    type = "identity.person_registered"
    person_id: uuid.UUID
    school_id: uuid.UUID
    role: Role
    display_name: str
    email: str
    locale: Locale = "nl"


@register
class GroupCreated(Event):
    type = "identity.group_created"
    group_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    school_year: str


@register
class MembershipGranted(Event):
    """A teacher teaches a group, or a guardian follows it, for the group's school year."""

    type = "identity.membership_granted"
    group_id: uuid.UUID
    person_id: uuid.UUID
    role: Literal["teacher", "guardian"]
    # Grows with every change of any membership: a copy applies an event only if it is newer than
    # what it holds, so a grant and a revoke handled out of order cannot leave a revoked parent in.
    revision: int


@register
class MembershipRevoked(Event):
    type = "identity.membership_revoked"
    group_id: uuid.UUID
    person_id: uuid.UUID
    role: Literal["teacher", "guardian"]
    revision: int


@register
class PostPublished(Event):
    type = "posts.post_published"
    post_id: uuid.UUID
    group_id: uuid.UUID
    author_id: uuid.UUID
    photo_ids: list[uuid.UUID] = Field(default_factory=list)
    excerpt: str = Field(max_length=200)


@register
class PhotoProcessed(Event):
    type = "media.photo_processed"
    photo_id: uuid.UUID
    post_id: uuid.UUID
    variants: list[int]


@register
class PhotoRejected(Event):
    """A photo of a post will not be shown: not a decodable image, too many pixels, or not one the
    post's author uploaded and had not used before."""

    type = "media.photo_rejected"
    photo_id: uuid.UUID
    post_id: uuid.UUID
    reason: str
