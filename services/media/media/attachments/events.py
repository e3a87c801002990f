"""What media does with posts' word on attachments (called from media.events, which holds the one handler
per event type): which posts name an attachment (AttachmentPostsChanged), and who administers a school
(StaffChanged: only its admins upload attachments for the school).

Posts decides which posts may name an attachment (a teacher's: one post of its group; a school admin's:
the posts of one announcement, one per group) and tells the whole set on every change, newest revision
winning, so events handled out of order (consumers run concurrently: a post deleted before a sibling's
publication is handled) never take an attachment away from a post that still names it."""

import logging

import asyncpg

from media.attachments import store
from shared.contracts import AttachmentPostsChanged, StaffChanged
from shared.staff_copy import upsert_staff

log = logging.getLogger(__name__)


async def posts_changed(conn: asyncpg.Connection, event: AttachmentPostsChanged) -> None:
    """Served to the members of the groups of the published posts; kept unserved while only send-later
    posts name it (so the one-day clean-up of unused uploads leaves it); deleted from storage by the
    removal drainer once no post names it."""
    published = sorted({p.group_id for p in event.posts if p.published})
    waiting = any(not p.published for p in event.posts)
    changed = await store.follow_posts(conn, event.attachment_id, event.revision, published, waiting)
    if changed is None:
        return
    status, refused = changed
    for group_id in refused:
        # Posts lets an attachment go only to its own group or its school's: one media does not know as
        # such stays out of that group.
        log.warning(
            "attachment not served to a group",
            extra={"attachment_id": str(event.attachment_id), "group_id": str(group_id)},
        )
    log.info("attachment posts followed", extra={"attachment_id": str(event.attachment_id), "status": status})


async def staff_changed(conn: asyncpg.Connection, event: StaffChanged) -> None:
    await upsert_staff(conn, event.school_id, event.person_id, list(event.roles), event.revision)
