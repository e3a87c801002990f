"""The feed's HTTP handlers: the parent's feed, one post, likes, "seen" and the teacher's view.

Membership is read from posts' own copy (shared.membership_copy) on every request: a parent whose
child left a group loses its posts at once, whatever their token says. A post the caller may not
see answers 404, like one that does not exist."""

from aiohttp import web

from posts.feed import store
from posts.feed.domain import FeedQuery, LikeState
from shared import membership_copy
from shared.app import POOL
from shared.errors import Forbidden, NotFound
from shared.http import json_response, path_id, read_query
from shared.tokens import require_caller


def _json(text: str) -> web.Response:
    """A 200 with JSON the database built."""
    return web.Response(body=text.encode(), content_type="application/json")


async def get_feed(request: web.Request) -> web.Response:
    """FeedPage: the newest posts of the groups the caller belongs to now; 422 for a bad query."""
    caller = require_caller(request)
    query = read_query(request, FeedQuery)
    async with request.app[POOL].acquire() as conn:
        page = await store.feed_json(conn, caller.person_id, query.limit, query.position())
    return _json(page)


async def get_post(request: web.Request) -> web.Response:
    """Opening a post marks it seen for the caller (once; opening it again changes nothing)."""
    caller = require_caller(request)
    post_id = path_id(request, "post_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if await store.role_for_post(conn, post_id, caller.person_id) is None:
            raise NotFound("no such post")
        await store.mark_seen(conn, post_id, caller.person_id)
        view = await store.post_json(conn, post_id, caller.person_id)
    if view is None:
        raise NotFound("no such post")
    return _json(view)


async def mark_seen(request: web.Request) -> web.Response:
    """For a client that shows a whole post in the feed: seen without fetching it again."""
    caller = require_caller(request)
    post_id = path_id(request, "post_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if await store.role_for_post(conn, post_id, caller.person_id) is None:
            raise NotFound("no such post")
        await store.mark_seen(conn, post_id, caller.person_id)
    return web.Response(status=204)


async def like(request: web.Request) -> web.Response:
    """LikeState after liking: 404 for a post the caller cannot see, 403 for a teacher."""
    return await _set_like(request, liked=True)


async def unlike(request: web.Request) -> web.Response:
    """LikeState after taking the like back (none to take back is fine): 404 / 403 as for a like."""
    return await _set_like(request, liked=False)


async def _set_like(request: web.Request, liked: bool) -> web.Response:
    """Seed rule 9: parents like a post, one like per account; repeating a request changes nothing."""
    caller = require_caller(request)
    post_id = path_id(request, "post_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        role = await store.role_for_post(conn, post_id, caller.person_id)
        if role is None:
            raise NotFound("no such post")
        if role != "guardian":
            raise Forbidden("only parents like posts")
        change = store.like if liked else store.unlike
        count = await change(conn, post_id, caller.person_id)
    return json_response(LikeState(post_id=post_id, liked=liked, like_count=count))


async def get_group_posts(request: web.Request) -> web.Response:
    """GroupPostsPage, the teacher's view of a group: per post the families that saw it, who liked it
    and how it was delivered. 404 for a group the caller is not in, 403 for its parents."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    query = read_query(request, FeedQuery)
    async with request.app[POOL].acquire() as conn:
        role = await membership_copy.role_in(conn, group_id, caller.person_id)
        if role is None:
            raise NotFound(membership_copy.NOT_A_MEMBER_YET)
        if role != "teacher":
            raise Forbidden("only the group's teachers see who read its posts")
        page = await store.group_posts_json(conn, group_id, caller.person_id, query.limit, query.position())
    return _json(page)
