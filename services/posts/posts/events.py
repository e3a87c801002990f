"""What posts does with other services' events: keep its copies of schools, staff, groups and
memberships, and follow the processing state of the photos of its posts."""

import uuid

import asyncpg

from posts import store
from posts.children import keep_children_copy
from posts.conferences import ended
from posts.feed.events import keep_delivery_reports
from posts.helper_lists.events import keep_account_names, release_leaver
from posts.publishing import attachments, photos
from posts.publishing import store as publishing
from shared.consumer import Handlers
from shared.contracts import (
    AttachmentRemoved,
    AttachmentUploaded,
    GroupChanged,
    PhotoProcessed,
    PhotoRejected,
    PhotosPurged,
    SchoolChanged,
    StaffChanged,
)
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy
from shared.staff_copy import upsert_staff


async def _membership_changed(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> None:
    # A child leaving the group or the school ends what the family had there at once, in the same
    # transaction as the copy's change: conference bookings, helper-list places (issue 7).
    await ended.membership_changed(conn, group_id)
    await release_leaver(conn, group_id, person_id)


handlers = Handlers()
keep_membership_copy(handlers, with_children=True, after=_membership_changed)
keep_delivery_reports(handlers)
keep_children_copy(handlers)
photos.keep_photo_copy(handlers)
keep_account_names(handlers)


@handlers.on(SchoolChanged)
async def school_changed(conn: asyncpg.Connection, _env: Envelope, event: SchoolChanged) -> None:
    # The time zone a school's days are counted in, and its posts per day (seed rule 5).
    await publishing.upsert_school(
        conn,
        event.school_id,
        event.time_zone,
        event.max_posts_per_day,
        event.min_posts_per_week,
        event.revision,
    )


@handlers.on(StaffChanged)
async def staff_changed(conn: asyncpg.Connection, _env: Envelope, event: StaffChanged) -> None:
    # Who administers a school: admins edit and delete its posts and write announcements.
    await upsert_staff(conn, event.school_id, event.person_id, list(event.roles), event.revision)


@handlers.on(GroupChanged)
async def group_changed(conn: asyncpg.Connection, _env: Envelope, event: GroupChanged) -> None:
    await store.upsert_group(
        conn,
        event.group_id,
        event.school_id,
        event.name,
        event.school_year,
        event.revision,
        event.year_starts_on,
        event.year_ends_on,
    )


@handlers.on(PhotoProcessed)
async def photo_processed(conn: asyncpg.Connection, _env: Envelope, event: PhotoProcessed) -> None:
    await store.set_photo_status(conn, event.post_id, event.photo_id, "ready")


@handlers.on(PhotoRejected)
async def photo_rejected(conn: asyncpg.Connection, _env: Envelope, event: PhotoRejected) -> None:
    # A photo that cannot be shown leaves the post: the feed never shows it (issue 9, case 4).
    await photos.leave_post(conn, event.post_id, event.photo_id)


@handlers.on(PhotosPurged)
async def photos_purged(conn: asyncpg.Connection, _env: Envelope, event: PhotosPurged) -> None:
    # Past the school's retention the photos are gone from storage: their posts stop naming them.
    await store.forget_photos(conn, event.photo_ids)
    await photos.removed(conn, event.photo_ids, "deleted after the school's retention period")


@handlers.on(AttachmentUploaded)
async def attachment_uploaded(conn: asyncpg.Connection, env: Envelope, event: AttachmentUploaded) -> None:
    # Which attachments a writer may put in a post of the group (an announcement: of the school), and what
    # readers are shown of them.
    await attachments.keep_copy(conn, event, env.school_id)


@handlers.on(AttachmentRemoved)
async def attachment_removed(conn: asyncpg.Connection, _env: Envelope, event: AttachmentRemoved) -> None:
    await attachments.forget_unused(conn, event.attachment_id)
