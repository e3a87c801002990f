"""What media does with other services' events: keep its copy of memberships and of children's photo
consent, attach the photos of a published (or edited) post (processed since their upload), keep the photos
of posts waiting for their send-later time from the clean-up (media.reservations), and take the photos of a
deleted post out of sight."""

import logging
import uuid

import asyncpg

from media import changes, reservations, store
from media.attachments import events as attachments
from media.consent.events import keep_consent_copy
from shared.consumer import Handlers
from shared.contracts import (
    AttachmentPostsChanged,
    GroupChanged,
    PhotoProcessed,
    PhotoRejected,
    PostDeleted,
    PostPublished,
    PostUpdated,
    ScheduledPhotosChanged,
    SchoolChanged,
    StaffChanged,
)
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy
from shared.outbox import publish

log = logging.getLogger(__name__)
handlers = Handlers()
keep_membership_copy(handlers)
keep_consent_copy(handlers)


@handlers.on(GroupChanged)
async def group_changed(conn: asyncpg.Connection, _env: Envelope, event: GroupChanged) -> None:
    # Which school a group's photos belong to (storage keys and retention are per school), and when its
    # school year ends (retention counts from it).
    await store.upsert_group(conn, event.group_id, event.school_id, event.year_ends_on, event.revision)


@handlers.on(SchoolChanged)
async def school_changed(conn: asyncpg.Connection, _env: Envelope, event: SchoolChanged) -> None:
    # The watermark and share notice its photos carry, and how long they are kept after their year.
    await store.upsert_school(conn, event)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, env: Envelope, event: PostPublished) -> None:
    await _attach(conn, env, event.post_id, event.group_id, event.author_id, event.photo_ids)
    # A send-later post's photos were reserved until now: attached (or refused) above, so no longer.
    await reservations.appeared(conn, event.post_id, event.photo_ids)


@handlers.on(ScheduledPhotosChanged)
async def scheduled_photos_changed(
    conn: asyncpg.Connection, _env: Envelope, event: ScheduledPhotosChanged
) -> None:
    # The photos a post waiting for its send-later time names: not unused uploads for the clean-up.
    reserved = await reservations.follow(conn, event)
    if reserved is not None:
        log.info(
            "photos reserved for a send-later post",
            extra={"post_id": str(event.post_id), "photos": len(reserved), "named": len(event.photo_ids)},
        )


@handlers.on(PostUpdated)
async def post_updated(conn: asyncpg.Connection, env: Envelope, event: PostUpdated) -> None:
    # Until a send-later post appears its photos are not attached: PostPublished brings them.
    if not event.published:
        return
    # Photos taken out by the edit are rejected: posts' copy learns no post may carry them again.
    await changes.announce(conn, await store.drop_from_post(conn, event.post_id, event.photo_ids))
    attached = await store.in_post(conn, event.post_id)
    added = [p for p in event.photo_ids if p not in attached]
    await _attach(conn, env, event.post_id, event.group_id, event.editor_id, added)


@handlers.on(PostDeleted)
async def post_deleted(conn: asyncpg.Connection, _env: Envelope, event: PostDeleted) -> None:
    # A deleted post disappears everywhere: its photos are no longer shown to the group (its attachments
    # follow AttachmentPostsChanged).
    await changes.announce(conn, await store.drop_from_post(conn, event.post_id))


@handlers.on(AttachmentPostsChanged)
async def attachment_posts_changed(
    conn: asyncpg.Connection, _env: Envelope, event: AttachmentPostsChanged
) -> None:
    # Which groups' members may download an attachment, and when no post names it any more.
    await attachments.posts_changed(conn, event)


@handlers.on(StaffChanged)
async def staff_changed(conn: asyncpg.Connection, _env: Envelope, event: StaffChanged) -> None:
    # Who administers a school: only its admins upload attachments for the school (announcements).
    await attachments.staff_changed(conn, event)


async def _attach(
    conn: asyncpg.Connection,
    env: Envelope,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    uploader_id: uuid.UUID,
    photo_ids: list[uuid.UUID],
) -> None:
    if not photo_ids:
        return
    rows = await store.attach_to_post(conn, photo_ids, uploader_id, post_id, group_id, env.correlation_id)
    attached = {r["photo_id"] for r in rows}
    for photo_id in set(photo_ids) - attached:
        # Posts refuses such photos when the post is written; one its copy had not heard of yet (someone
        # else's, in another post, rejected, showing a child without consent) stays out of this group,
        # and posts takes it out of the post.
        log.warning("photo not attached", extra={"post_id": str(post_id), "photo_id": str(photo_id)})
        rejected = PhotoRejected(photo_id=photo_id, post_id=post_id, reason="not a photo this post may carry")
        await publish(conn, rejected, env.school_id)
    for row in rows:
        # Processed before the post named it: the post shows it ready at once.
        if row["status"] == "ready":
            processed = PhotoProcessed(photo_id=row["photo_id"], post_id=post_id, variants=list(row["sizes"]))
            await publish(conn, processed, env.school_id)
