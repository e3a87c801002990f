"""Every event type of Klaspost, in one place, so producers and consumers agree on the shape.

Routing key = event type. Types are named in the past tense after what happened.
"""

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

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
    watermark_photos: bool = Field(
        default=False, description="photo variants carry a visible 'do not share' mark with the school's name"
    )


@register
class GroupChanged(Event):
    """A group (stamgroep) of one school year was made or renamed (newest ``revision`` wins)."""

    type = "identity.group_changed"
    group_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    school_year: str
    year_starts_on: date | None = Field(default=None, description="first day of the school year (local)")
    year_ends_on: date | None = Field(
        default=None, description="last day of the school year (local): photo retention counts from it"
    )
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
class ChildChanged(Event):
    """A child was registered, or their name or photo consent changed. Posts keeps the names for
    sign-ups (the teacher's schedule, the messages about a booking); media keeps the consent for the
    photos a teacher tags the child in (seed rule 6). Newest ``revision`` wins."""

    type = "identity.child_changed"
    child_id: uuid.UUID
    school_id: uuid.UUID
    given_name: str
    family_name: str = Field(description="with the tussenvoegsel, e.g. 'de Vries'")
    photo_consent: bool
    revision: int


@register
class ChildErased(Event):
    """A child's data was erased at the school's request (GDPR art. 17): media removes every photo
    tagged with the child, posts the child's name, bookings and sign-ups."""

    type = "identity.child_erased"
    child_id: uuid.UUID
    school_id: uuid.UUID


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
    child_id: uuid.UUID | None = Field(
        default=None,
        description="the child the code is for, so that the child's erasure (ChildErased) can reach "
        "mails about it not sent yet; None in events published before this field existed",
    )
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
    attachment_ids: list[uuid.UUID] = Field(
        default_factory=list, description="the author's, see AttachmentUploaded"
    )
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
    attachment_ids: list[uuid.UUID] = Field(
        default_factory=list,
        description="the post's attachments from now on (media follows AttachmentPostsChanged)",
    )
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
class PhotosPurged(Event):
    """Photos of a school were deleted for good (variants, original and row): their school year ended
    longer ago than the school keeps photos (``photo_retention_days``). Posts drops them from its posts."""

    type = "media.photos_purged"
    school_id: uuid.UUID
    photo_ids: list[uuid.UUID]


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


# --- Posting policy (issue 6): the weekly check of seed rule 5 --------------------------------------


@register
class GroupQuiet(Event):
    """A group has had fewer posts this school week than its school asks (seed rule 5: at least
    ``min_posts_per_week``) when the weekly job looked, near the end of the week. The notifier emails
    each teacher named here one reminder; the event id is the same for a group and week, however often
    the job runs, so a teacher is reminded once."""

    type = "posts.group_quiet"
    group_id: uuid.UUID
    school_id: uuid.UUID
    group_name: str
    week: str = Field(description="ISO 8601 week of the school's local calendar, e.g. 2026-W49")
    posts_this_week: int
    min_posts_per_week: int
    teacher_ids: list[uuid.UUID] = Field(description="the group's teachers when the job looked")


# --- Sign-ups (issue 7): conferences and helper-parent lists ----------------------------------------


@register
class ConferenceOpened(Event):
    """A parent-teacher conference schedule was published to its groups (seed rule 7). The notifier
    tells the guardians in ``guardian_ids`` when booking opens for them: families with several children
    at ``early_opens_at`` (when the schedule has an early window), others at ``opens_at``."""

    type = "posts.conference_opened"
    schedule_id: uuid.UUID
    school_id: uuid.UUID
    group_ids: list[uuid.UUID]
    title: str = Field(max_length=120)
    opens_at: datetime
    early_opens_at: datetime | None = None
    closes_at: datetime
    guardian_ids: list[uuid.UUID]


@register
class SlotBooked(Event):
    """A conference slot was booked for a child (by a guardian, or by the teacher on the family's
    behalf). The notifier confirms it to the child's guardians and reminds them the day before
    ``starts_at`` (it holds that reminder itself; a move or cancel replaces or drops it)."""

    type = "posts.slot_booked"
    booking_id: uuid.UUID
    schedule_id: uuid.UUID
    school_id: uuid.UUID
    group_id: uuid.UUID
    child_id: uuid.UUID
    child_name: str = Field(description="the child's given name, to say whom the conference is about")
    title: str = Field(max_length=120)
    teacher_names: list[str] = Field(default_factory=list)
    location: str = ""
    starts_at: datetime
    ends_at: datetime
    guardian_ids: list[uuid.UUID]
    booked_by: uuid.UUID


@register
class SlotMoved(Event):
    """A booking moved to another slot of the same schedule (before the deadline, or by the teacher)."""

    type = "posts.slot_moved"
    booking_id: uuid.UUID
    schedule_id: uuid.UUID
    school_id: uuid.UUID
    group_id: uuid.UUID
    child_id: uuid.UUID
    child_name: str
    title: str = Field(max_length=120)
    teacher_names: list[str] = Field(default_factory=list)
    location: str = ""
    starts_at: datetime
    ends_at: datetime
    previous_starts_at: datetime
    guardian_ids: list[uuid.UUID]
    moved_by: uuid.UUID


@register
class SlotCancelled(Event):
    """A booking was cancelled (by the family before the deadline, the teacher, or because the
    schedule was withdrawn): the notifier drops the day-before reminder and tells the guardians.
    ``cancelled_by`` None: the system cancelled it, because the child left every group of the schedule
    or was erased (posts/conferences/ended.py); ``guardian_ids`` and ``child_name`` are then empty
    (nobody is told, the name is not passed on)."""

    type = "posts.slot_cancelled"
    booking_id: uuid.UUID
    schedule_id: uuid.UUID
    school_id: uuid.UUID
    child_id: uuid.UUID
    child_name: str
    title: str = Field(max_length=120)
    starts_at: datetime
    guardian_ids: list[uuid.UUID]
    cancelled_by: uuid.UUID | None = Field(
        default=None, description="None: the system (the child left or was erased)"
    )


@register
class BookingReminderDue(Event):
    """A child's family has not booked a slot two days before the booking window closes: the notifier
    reminds the guardians once (one event per schedule and child)."""

    type = "posts.booking_reminder_due"
    schedule_id: uuid.UUID
    school_id: uuid.UUID
    child_id: uuid.UUID
    child_name: str
    title: str = Field(max_length=120)
    closes_at: datetime
    guardian_ids: list[uuid.UUID]


@register
class SignupPromoted(Event):
    """A withdrawal freed a place on a helper-parent list item, and the first on its waiting list got
    it. The notifier tells that parent exactly once (the event id is the promotion's)."""

    type = "posts.signup_promoted"
    signup_id: uuid.UUID
    list_id: uuid.UUID
    item_id: uuid.UUID
    school_id: uuid.UUID
    group_id: uuid.UUID
    person_id: uuid.UUID
    list_title: str = Field(max_length=120)
    item_title: str = Field(max_length=120)
    deadline: datetime | None = None


@register
class AttachmentUploaded(Event):
    """A teacher's attachment (a PDF, judged by its bytes) was accepted for a group, or a school admin's
    for the school (``group_id`` null: the envelope's school; it goes in one announcement, to all its
    groups). Posts keeps a copy, so a post names only its writer's own unused attachments of that group
    (an announcement: of that school), and shows their names."""

    type = "media.attachment_uploaded"
    attachment_id: uuid.UUID
    group_id: uuid.UUID | None = Field(description="null: uploaded for the school, by one of its admins")
    uploader_id: uuid.UUID
    filename: str = Field(max_length=120, description="made safe by media; shown to the group's members")
    content_type: str
    size_bytes: int


@register
class AttachmentRemoved(Event):
    """An attachment no post used within a day was deleted from storage: posts forgets it, so that no
    post names it. (One taken out of its post, or of a deleted post, posts let go of itself.)"""

    type = "media.attachment_removed"
    attachment_id: uuid.UUID


class AttachmentPost(BaseModel):
    post_id: uuid.UUID
    group_id: uuid.UUID
    published: bool = Field(description="false while the post waits for its send-later time")


@register
class AttachmentPostsChanged(Event):
    """The posts that name an attachment changed (a post written, edited, deleted, or appearing at its
    send-later time): ``posts`` is the whole set from now on (one post for a teacher's attachment, one per
    group of the announcement for a school's). Media serves it to the members of the groups of the
    published ones, keeps it while any post names it (a send-later post's attachment is not an unused
    upload), and deletes it from storage once none does. Newest ``revision`` wins."""

    type = "posts.attachment_posts_changed"
    attachment_id: uuid.UUID
    posts: list[AttachmentPost]
    revision: int


# --- Photos a post may carry (issue 9: consent, erasure, no post naming a photo it may not show) -----


@register
class PhotoChanged(Event):
    """A photo's state as posts must know it to let a post carry it. Media publishes it when an upload
    is accepted (its variants are made at once, before any post uses it), when processing ends, when
    the children tagged in it or their photo consent change, and when it is removed (unused for a day,
    taken out of its post, a tagged child erased). Posts keeps a copy: a post names only its writer's
    own photos of that group, processing or ready, in no other post, showing no child without consent;
    a photo rejected or removed leaves the posts that carried it. Newest ``revision`` wins."""

    type = "media.photo_changed"
    photo_id: uuid.UUID
    school_id: uuid.UUID
    group_id: uuid.UUID
    uploader_id: uuid.UUID
    status: Literal["processing", "ready", "rejected", "removed"]
    reason: str | None = Field(default=None, description="why it was rejected or removed, for the teacher")
    children: list[uuid.UUID] = Field(default_factory=list, description="the children tagged in it")
    without_consent: list[uuid.UUID] = Field(
        default_factory=list, description="tagged children without photo consent: no new post may carry it"
    )
    revision: int


@register
class ScheduledPhotosChanged(Event):
    """The photos a post waiting for its send-later time names (issue 9 / issue 6). Media deletes uploads
    no post used within a day but attaches a post's photos only when it appears (PostPublished), up to
    20 hours after it was written; so posts tells, whenever a send-later post is written, has its photos
    edited or is deleted before it appears, the whole list it names from now on (empty: none, the post
    deleted). Media keeps those photos out of the clean-up of unused uploads until the post appears; one
    let go gets a day from then. Newest ``revision`` per post wins (handled out of order, an older list
    never lets a photo go that the post still names)."""

    type = "posts.scheduled_photos_changed"
    post_id: uuid.UUID
    group_id: uuid.UUID
    photo_ids: list[uuid.UUID] = Field(description="in the post's order; empty when it names none any more")
    revision: int
