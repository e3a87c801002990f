"""Every event type of Klaspost, in one place, so producers and consumers agree on the shape.

Routing key = event type. Types are named in the past tense after what happened.
"""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.envelope import Event, register

Locale = Literal["nl", "en"]
MemberRole = Literal["teacher", "guardian"]


@register
class AccountChanged(Event):
    """An account was made or its contact details changed. One account per email address across the
    deployment; the notifier keeps the address, name and language from it. ``revision`` grows with
    every change, so a copy never lets an older event overwrite a newer one."""

    type = "identity.account_changed"
    person_id: uuid.UUID
    email: str
    display_name: str
    locale: Locale = "nl"
    revision: int


@register
class SchoolChanged(Event):
    """A school was made or its name, time zone or settings changed (last writer wins by revision)."""

    type = "identity.school_changed"
    school_id: uuid.UUID
    name: str
    time_zone: str = Field(description="IANA name, e.g. Europe/Amsterdam")
    locale: Locale = "nl"
    max_posts_per_day: int
    min_posts_per_week: int
    digest_time: str = Field(description="local time HH:MM")
    photo_retention_days: int
    share_notice: str
    revision: int


@register
class GroupChanged(Event):
    """A group (stamgroep) of one school year was made or renamed (newest ``revision`` wins)."""

    type = "identity.group_changed"
    group_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    school_year: str
    revision: int


@register
class MembershipGranted(Event):
    """A teacher teaches a group, or a guardian follows it through a child placed there, in the
    school's current year. Identity derives memberships; no other service decides them."""

    type = "identity.membership_granted"
    group_id: uuid.UUID
    person_id: uuid.UUID
    role: MemberRole
    # Grows with every change of any membership: a copy applies an event only if it is newer than
    # what it holds, so a grant and a revoke handled out of order cannot leave a revoked parent in.
    revision: int
    children: list[uuid.UUID] = Field(
        default_factory=list,
        description="the children through whom the person belongs (a family is a child); "
        "granted again with a new revision when they change",
    )


@register
class MembershipRevoked(Event):
    type = "identity.membership_revoked"
    group_id: uuid.UUID
    person_id: uuid.UUID
    role: MemberRole
    revision: int


@register
class InvitationIssued(Event):
    """A guardian of a placed child is invited (or reminded) by email with a single-use access code
    (seed rule 2). The code is secret: the outbox drops it once sent, the notifier once mailed."""

    type = "identity.invitation_issued"
    secret_fields = frozenset({"access_code"})
    invitation_id: uuid.UUID
    school_id: uuid.UUID
    email: str
    locale: Locale = "nl"
    school_name: str
    child_name: str = Field(description="the child's given name, to say whom the code is for")
    access_code: str = ""
    expires_at: datetime
    reminder: int = Field(default=0, description="0 for the invitation, n for its n-th reminder")


@register
class PasswordResetRequested(Event):
    """Someone asked to (re)set the password of an account: a single-use link by email. Also sent
    when staff are added to a school and have no password yet (``purpose="welcome"``)."""

    type = "identity.password_reset_requested"
    secret_fields = frozenset({"reset_token"})
    request_id: uuid.UUID
    person_id: uuid.UUID
    email: str
    locale: Locale = "nl"
    purpose: Literal["reset", "welcome"] = "reset"
    school_name: str | None = None
    reset_token: str = ""
    expires_at: datetime


@register
class StaffChanged(Event):
    """A person's staff roles at a school changed (an empty list: no longer staff there). Posts keeps
    who administers a school from it (an admin edits and deletes any post, writes announcements).
    Newest ``revision`` wins."""

    type = "identity.staff_changed"
    school_id: uuid.UUID
    person_id: uuid.UUID
    roles: list[Literal["admin", "teacher"]]
    revision: int


@register
class PostPublished(Event):
    """A post appeared for the parents of its group: at once, or at its "send later" time. ``urgent``
    (set by a school admin) asks the notifier to send at once on every channel. ``announcement_id``
    is shared by the posts of one announcement to several groups."""

    type = "posts.post_published"
    post_id: uuid.UUID
    group_id: uuid.UUID
    author_id: uuid.UUID
    photo_ids: list[uuid.UUID] = Field(default_factory=list)
    excerpt: str = Field(max_length=200)
    title: str = Field(default="", max_length=120)
    urgent: bool = False
    published_at: datetime | None = None
    announcement_id: uuid.UUID | None = None


@register
class PostUpdated(Event):
    """A post's title, body or photos were edited. Nobody is notified again; copies of the excerpt
    (pending notifications) follow, and media attaches added photos and drops removed ones."""

    type = "posts.post_updated"
    post_id: uuid.UUID
    group_id: uuid.UUID
    author_id: uuid.UUID
    editor_id: uuid.UUID = Field(description="who edited: photos added by the edit are theirs")
    photo_ids: list[uuid.UUID] = Field(default_factory=list)
    excerpt: str = Field(max_length=200)
    title: str = Field(max_length=120)
    published: bool = Field(description="false while the post waits for its send-later time")


@register
class PostDeleted(Event):
    """A post was deleted: it disappears everywhere. The notifier cancels what it has not sent yet,
    media stops serving the post's photos."""

    type = "posts.post_deleted"
    post_id: uuid.UUID
    group_id: uuid.UUID


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


@register
class DeliveryReport(Event):
    """How far the messages about a post have got (the notifier, now and then while they change).
    Counts of messages: one email per parent, one push per device. Newest ``revision`` wins."""

    type = "notifier.delivery_report"
    post_id: uuid.UUID
    targeted: int = Field(description="accounts the post is sent to")
    delivered_email: int
    delivered_push: int
    failed: int
    pending: int
    held: int = Field(default=0, description="waiting for a digest or the end of quiet hours")
    reported_at: datetime
    revision: int
