"""Publishing's HTTP handlers: a teacher's post to a group, a school admin's announcement to many,
edits, deletes, and the posts waiting for their send-later time.

Who may: a teacher of the group (posts' membership copy) writes, edits and deletes the group's posts;
an admin of the school (posts' staff copy) edits and deletes any post of the school, writes
announcements and marks posts urgent. Announcements are the school's: only admins edit them.
"""

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import asyncpg
from aiohttp import web

from posts.publishing import attachments, photos, store
from posts.publishing.domain import (
    AnnouncementView,
    CreateAnnouncement,
    CreatePost,
    PhotoRef,
    ScheduledList,
    UpdatePost,
    WrittenPost,
    check_publish_at,
    excerpt,
    local_day,
    next_local_midnight,
)
from shared import membership_copy
from shared.app import POOL
from shared.contracts import PostDeleted, PostPublished, PostUpdated
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.outbox import publish, publish_many
from shared.staff_copy import is_admin
from shared.tokens import Caller, require_caller


def published_event(
    post: Mapping[str, Any], photo_ids: list[uuid.UUID], attachment_ids: list[uuid.UUID] | None = None
) -> PostPublished:
    """What consumers are told when a post appears (now, or at its send-later time)."""
    return PostPublished(
        post_id=post["post_id"],
        group_id=post["group_id"],
        author_id=post["author_id"],
        photo_ids=photo_ids,
        attachment_ids=attachment_ids or [],
        excerpt=excerpt(post["body"]),
        title=post["title"],
        urgent=post["urgent"],
        published_at=post["published_at"],
        announcement_id=post["announcement_id"],
    )


def _appears(now: datetime, publish_at: datetime | None) -> datetime:
    """When the post appears: now, or its send-later time once checked (422 naming publish_at)."""
    if publish_at is None:
        return now
    problem = check_publish_at(publish_at, now)
    if problem:
        raise ValidationFailed(
            "the send-later time is not accepted", [{"field": "publish_at", "problem": problem}]
        )
    return publish_at


async def _refuse_second_post(
    conn: asyncpg.Connection, group: asyncpg.Record, day: date, today: date, time_zone: str, at_most: int
) -> Conflict:
    """Seed rule 5's refusal: when the next post is possible, and that the day's post can be edited."""
    post_id = await store.post_of_day(conn, group["group_id"], day)
    next_at = next_local_midnight(day, time_zone)
    which = "today" if day == today else f"on {day.isoformat()}"
    count = "a post" if at_most == 1 else f"{at_most} posts"
    return Conflict(
        f"{group['name']} already has {count} {which}, the most a group gets in a day. The next post is "
        f"possible from {next_at:%Y-%m-%d %H:%M} ({time_zone}); "
        + ("today's post can still be edited." if day == today else "that day's post can still be edited."),
        {
            "post_id": str(post_id) if post_id else None,
            "day": day.isoformat(),
            "next_post_at": next_at.isoformat(),
            "max_posts_per_day": at_most,
        },
    )


async def admit(conn: asyncpg.Connection, group: asyncpg.Record, appears: datetime, now: datetime) -> date:
    """Count a post of the group for the school's local day it appears on (seed rule 5), in the caller's
    transaction, and return that day; Conflict (409) when the group has had its posts that day.
    ``group`` as store.writer reads it (with the school's time_zone and max_posts_per_day)."""
    time_zone, at_most = group["time_zone"], group["max_posts_per_day"]
    day = local_day(appears, time_zone)
    if not await store.count_post(conn, group["group_id"], day, at_most):
        raise await _refuse_second_post(conn, group, day, local_day(now, time_zone), time_zone, at_most)
    return day


async def create_post(request: web.Request) -> web.Response:
    """A teacher's post to a group they teach: now, or at ``publish_at``. 409 when the group has had
    its posts for that school day (seed rule 5)."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    command = await read_json(request, CreatePost)
    await attachments.wait_for_copies(request.app[POOL], command.attachment_ids)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        group = await store.writer(conn, group_id, caller.person_id)
        if group is None or (group["role"] is None and not group["admin"]):
            raise NotFound(membership_copy.NOT_A_MEMBER_YET)
        if group["role"] != "teacher":
            raise Forbidden("only the group's teachers can post to it; school admins write announcements")
        if command.urgent and not group["admin"]:
            raise Forbidden("only school admins can mark a post urgent", {"field": "urgent"})
        await photos.check(conn, command.photo_ids, group_id, caller.person_id)
        day = await admit(conn, group, _appears(group["now"], command.publish_at), group["now"])
        post_id = uuid.uuid4()
        stamps = await store.insert_post(
            conn,
            post_id,
            group,
            caller.person_id,
            command.title,
            command.body,
            command.photo_ids,
            urgent=command.urgent,
            publish_at=command.publish_at,
            day=day,
        )
        attached = await attachments.take(
            conn, post_id, group_id, caller.person_id, command.attachment_ids, school_id=group["school_id"]
        )
        post = WrittenPost(
            post_id=post_id,
            group_id=group_id,
            group_name=group["name"],
            author_id=caller.person_id,
            title=command.title,
            body=command.body,
            urgent=command.urgent,
            announcement_id=None,
            photos=[PhotoRef(photo_id=p, status="processing") for p in command.photo_ids],
            attachments=attached,
            status="published" if command.publish_at is None else "scheduled",
            created_at=stamps["created_at"],
            publish_at=command.publish_at,
            published_at=stamps["published_at"],
            updated_at=None,
        )
        if command.publish_at is None:
            event = published_event(post.model_dump(), command.photo_ids, command.attachment_ids)
            await publish(conn, event, group["school_id"])
        elif command.photo_ids:
            # Attached only when it appears: media keeps them from its clean-up until then.
            await photos.tell_media(conn, post_id)
    return json_response(post, status=201)


async def create_announcement(request: web.Request) -> web.Response:
    """A school admin's announcement: one post per group, to the chosen groups or every group of the
    current year, now or at ``publish_at``, with the attachments the admin uploaded for the school (one
    stored file for all its posts: media serves it to every group it went to). Announcements do not count
    against the groups' posts per day: they are the school's, and a teacher's post that day stays
    possible."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    command = await read_json(request, CreateAnnouncement)
    await attachments.wait_for_copies(request.app[POOL], command.attachment_ids)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await is_admin(conn, school_id, caller.person_id):
            raise NotFound("no such school")
        groups = await store.school_groups(conn, school_id, command.group_ids)
        if command.group_ids is not None and len(groups) != len(command.group_ids):
            unknown = sorted(str(g) for g in set(command.group_ids) - {g["group_id"] for g in groups})
            raise ValidationFailed(
                "some groups are not groups of this school",
                [{"field": "group_ids", "problem": f"not a group of this school: {', '.join(unknown)}"}],
            )
        if not groups:
            raise Conflict("no group of the school's current year has members yet")
        appears = _appears(await store.now(conn), command.publish_at)
        time_zone, _ = await store.policy(conn, school_id)
        announcement_id = uuid.uuid4()
        rows = []
        for group in groups:
            post_id = uuid.uuid4()
            await store.insert_post(
                conn,
                post_id,
                group,
                caller.person_id,
                command.title,
                command.body,
                [],
                urgent=command.urgent,
                publish_at=command.publish_at,
                day=local_day(appears, time_zone),
                announcement_id=announcement_id,
            )
            # The school's attachments: one stored file for every post of the announcement.
            await attachments.take(
                conn,
                post_id,
                group["group_id"],
                caller.person_id,
                command.attachment_ids,
                school_id=school_id,
                announcement_id=announcement_id,
                tell=False,
            )
            row = await store.written_post(conn, post_id)
            assert row is not None
            rows.append(row)
        await attachments.tell_media(conn, command.attachment_ids, school_id)
        if command.publish_at is None:
            events = [published_event(row, [], command.attachment_ids) for row in rows]
            await publish_many(conn, events, school_id)
    view = AnnouncementView(announcement_id=announcement_id, posts=[store.written_view(r) for r in rows])
    return json_response(view, status=201)


async def _editable(conn: asyncpg.Connection, caller: Caller, post_id: uuid.UUID) -> asyncpg.Record:
    """The post, locked, if the caller may edit or delete it; 404 when they may not see it, 403 when
    they see it but may not change it."""
    row = await store.written_post(conn, post_id, lock=True)
    if row is None:
        raise NotFound("no such post")
    if await is_admin(conn, row["school_id"], caller.person_id):
        return row
    role = await membership_copy.role_in(conn, row["group_id"], caller.person_id)
    if role is None or (role != "teacher" and row["published_at"] is None):
        raise NotFound("no such post")
    if role != "teacher":
        raise Forbidden("only the group's teachers and the school's admins can change its posts")
    if row["announcement_id"] is not None:
        raise Forbidden("an announcement is the school's: only its admins can change it")
    return row


async def update_post(request: web.Request) -> web.Response:
    """Edit a post's title, body or photos (``{}``: nothing changes, nothing is published). Nobody is
    notified again; PostUpdated tells the copies."""
    caller = require_caller(request)
    post_id = path_id(request, "post_id")
    command = await read_json(request, UpdatePost)
    await attachments.wait_for_copies(request.app[POOL], command.attachment_ids or [])
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _editable(conn, caller, post_id)
        given = command.model_fields_set
        if not given:
            return json_response(store.written_view(row))
        if "photo_ids" in given and command.photo_ids and row["announcement_id"] is not None:
            raise ValidationFailed(
                "announcements carry no photos",
                [{"field": "photo_ids", "problem": "announcements carry no photos"}],
            )
        if "photo_ids" in given:
            await photos.check(conn, command.photo_ids, row["group_id"], caller.person_id, post_id)
        title = command.title if "title" in given else row["title"]
        body = command.body if "body" in given else row["body"]
        await store.update_post(conn, post_id, title, body)
        if "photo_ids" in given:
            await store.replace_photos(conn, post_id, command.photo_ids)
            if row["published_at"] is None and (command.photo_ids or row["photos"]):
                await photos.tell_media(conn, post_id)
        if "attachment_ids" in given:
            await attachments.take(
                conn,
                post_id,
                row["group_id"],
                caller.person_id,
                command.attachment_ids,
                school_id=row["school_id"],
                announcement_id=row["announcement_id"],
            )
        edited = await store.written_post(conn, post_id)
        assert edited is not None
        view = store.written_view(edited)
        event = PostUpdated(
            post_id=post_id,
            group_id=row["group_id"],
            author_id=row["author_id"],
            editor_id=caller.person_id,
            photo_ids=[p.photo_id for p in view.photos],
            attachment_ids=[a.attachment_id for a in view.attachments],
            excerpt=excerpt(body),
            title=title,
            published=row["published_at"] is not None,
        )
        await publish(conn, event, row["school_id"])
    return json_response(view)


async def delete_post(request: web.Request) -> web.Response:
    """Delete a post: gone from every view here, and through PostDeleted from pending notifications and
    from media's photos. A post that had appeared still counts for its day (parents saw it); one that
    was waiting for its send-later time frees its day."""
    caller = require_caller(request)
    post_id = path_id(request, "post_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _editable(conn, caller, post_id)
        await store.mark_deleted(conn, post_id)
        await attachments.post_deleted(conn, post_id, row["school_id"])
        if row["published_at"] is None and row["photos"]:
            # Its photos are free for another post (and media's clean-up counts a day from now).
            await photos.tell_media(conn, post_id)
        if row["published_at"] is None and row["announcement_id"] is None:
            await store.uncount_post(conn, row["group_id"], row["local_day"])
        await publish(conn, PostDeleted(post_id=post_id, group_id=row["group_id"]), row["school_id"])
    return web.Response(status=204)


async def scheduled_posts(request: web.Request) -> web.Response:
    """The group's posts waiting for their send-later time, soonest first: for its teachers and the
    school's admins (parents see a post only once it appears)."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    async with request.app[POOL].acquire() as conn:
        group = await store.writer(conn, group_id, caller.person_id)
        if group is None or (group["role"] is None and not group["admin"]):
            raise NotFound(membership_copy.NOT_A_MEMBER_YET)
        if group["role"] != "teacher" and not group["admin"]:
            raise Forbidden("only the group's teachers and the school's admins see scheduled posts")
        rows = await store.scheduled_posts(conn, group_id)
    return json_response(ScheduledList(posts=[store.written_view(r) for r in rows]))
