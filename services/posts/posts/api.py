"""Posts' HTTP handlers."""

import uuid

from aiohttp import web

from posts import store
from posts.domain import CreatePost, FeedCursor, FeedPage, FeedQuery, excerpt
from shared import membership_copy
from shared.app import POOL
from shared.contracts import PostPublished
from shared.errors import Forbidden, NotFound
from shared.http import json_response, path_id, read_json, read_query
from shared.outbox import publish
from shared.tokens import require_caller


async def create_post(request: web.Request) -> web.Response:
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    command = await read_json(request, CreatePost)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        role = await membership_copy.role_in(conn, group_id, caller.person_id)
        group = await store.group(conn, group_id)
        if role is None or group is None:
            raise NotFound("no such group")
        if role != "teacher":
            raise Forbidden("only the group's teachers can post")
        post_id = uuid.uuid4()
        await store.insert_post(
            conn, post_id, group_id, group["school_id"], caller.person_id, command.body, command.photo_ids
        )
        await publish(
            conn,
            PostPublished(
                post_id=post_id,
                group_id=group_id,
                author_id=caller.person_id,
                photo_ids=command.photo_ids,
                excerpt=excerpt(command.body),
            ),
            group["school_id"],
        )
        view = await store.visible_post(conn, post_id, caller.person_id)
    assert view is not None
    return json_response(view, status=201)


async def get_post(request: web.Request) -> web.Response:
    caller = require_caller(request)
    post_id = path_id(request, "post_id")
    async with request.app[POOL].acquire() as conn:
        view = await store.visible_post(conn, post_id, caller.person_id)
    if view is None:
        raise NotFound("no such post")
    return json_response(view)


async def get_feed(request: web.Request) -> web.Response:
    caller = require_caller(request)
    query = read_query(request, FeedQuery)
    async with request.app[POOL].acquire() as conn:
        posts = await store.feed(conn, caller.person_id, query.limit, query.position())
    last = posts[-1] if len(posts) == query.limit else None
    next_cursor = FeedCursor(created_at=last.created_at, post_id=last.post_id).encode() if last else None
    return json_response(FeedPage(posts=posts, next_cursor=next_cursor))
