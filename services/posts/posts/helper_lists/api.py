"""Helper lists' HTTP handlers: a teacher posts a list to their group, edits it and its items, closes
it early and signs parents up or off on their behalf; parents of the group sign up for an item and
withdraw until the deadline; a withdrawal or a higher capacity gives the free place to the first on
the waiting list and publishes SignupPromoted (the notifier tells that parent, once).

Who may (posts' membership copy, read on every request): the group's teachers write and see names;
the group's guardians sign up; anyone not in the group now gets 404 for every list of it (another
group, another school, or last school year's group).
"""

import uuid
from collections import defaultdict
from datetime import date, datetime
from typing import Literal

import asyncpg
from aiohttp import web

from posts import signups
from posts.helper_lists import store
from posts.helper_lists.domain import (
    CreateHelperList,
    Helper,
    HelperListSignups,
    HelperListsPage,
    HelperListView,
    ItemSignups,
    ItemView,
    UpdateHelperList,
    UpdateItem,
    announcement_body,
    day_start,
    deadline_problem,
    list_status,
    local,
)
from posts.publishing import store as publishing
from posts.publishing.api import published_event
from posts.publishing.domain import excerpt
from shared import membership_copy
from shared.app import POOL
from shared.contracts import PostUpdated, SignupPromoted
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.outbox import publish
from shared.tokens import require_caller


async def _views(
    conn: asyncpg.Connection, lists: list[asyncpg.Record], person_id: uuid.UUID
) -> list[HelperListView]:
    """The lists as the person sees them: figures per item and their own state."""
    items: dict[uuid.UUID, list[ItemView]] = defaultdict(list)
    for row in await store.item_figures(conn, [lst["list_id"] for lst in lists], person_id):
        items[row["list_id"]].append(
            ItemView(
                item_id=row["item_id"],
                title=row["title"],
                capacity=row["capacity"],
                signed_up=row["signed_up"],
                waiting=row["waiting"],
                mine=row["mine"],
                place_in_line=row["place_in_line"],
            )
        )
    return [
        HelperListView(
            list_id=lst["list_id"],
            group_id=lst["group_id"],
            group_name=lst["group_name"],
            school_year=lst["school_year"],
            author_id=lst["author_id"],
            title=lst["title"],
            description=lst["description"],
            activity_on=lst["activity_on"],
            deadline=local(lst["deadline"], lst["time_zone"]),
            time_zone=lst["time_zone"],
            status=list_status(lst["deadline"], lst["closed_at"], lst["now"]),
            closed_at=lst["closed_at"],
            created_at=lst["created_at"],
            items=items[lst["list_id"]],
        )
        for lst in lists
    ]


async def _view(conn: asyncpg.Connection, list_id: uuid.UUID, person_id: uuid.UUID) -> HelperListView:
    row = await store.list_for(conn, list_id, person_id)
    if row is None:
        raise NotFound("no such list")
    return (await _views(conn, [row], person_id))[0]


async def _list(
    conn: asyncpg.Connection,
    list_id: uuid.UUID,
    person_id: uuid.UUID,
    role: str,
    lock: Literal["share", "update"] | None = None,
) -> asyncpg.Record:
    """The list if the person is in its group now (404 otherwise) with the ``role`` there (403 otherwise)."""
    row = await store.list_for(conn, list_id, person_id, lock)
    if row is None:
        raise NotFound("no such list")
    if row["role"] != role:
        raise Forbidden(
            "only the group's parents sign up" if role == "guardian" else "only the group's teachers do this"
        )
    return row


def _open_for_parents(row: asyncpg.Record) -> None:
    """Parents change their sign-ups while the list is open: 409 saying why not, once closed."""
    status = list_status(row["deadline"], row["closed_at"], row["now"])
    if status == "closed":
        raise Conflict(
            "the teacher has closed this list; ask the teacher to change your sign-up",
            {"status": status, "closed_at": row["closed_at"].isoformat()},
        )
    if status == "deadline_passed":
        deadline = local(row["deadline"], row["time_zone"])
        raise Conflict(
            f"the deadline for this list passed on {deadline:%Y-%m-%d %H:%M} ({row['time_zone']}); "
            "ask the teacher to change your sign-up",
            {"status": status, "deadline": deadline.isoformat()},
        )


async def _item(conn: asyncpg.Connection, row: asyncpg.Record, item_id: uuid.UUID) -> asyncpg.Record:
    item = await store.lock_item(conn, row["list_id"], item_id)
    if item is None:
        raise NotFound("no such item")
    return item


async def promote_waiting(
    conn: asyncpg.Connection, row: asyncpg.Record, item_id: uuid.UUID, item_title: str, capacity: int
) -> None:
    """Free places of the item go to the first waiting, each told once (SignupPromoted)."""
    for promoted in await store.promote(conn, row["group_id"], item_id, capacity):
        event = SignupPromoted(
            signup_id=promoted["signup_id"],
            list_id=row["list_id"],
            item_id=item_id,
            school_id=row["school_id"],
            group_id=row["group_id"],
            person_id=promoted["person_id"],
            list_title=row["title"],
            item_title=item_title,
            deadline=row["deadline"],
        )
        await publish(conn, event, row["school_id"])


async def _join(
    conn: asyncpg.Connection, row: asyncpg.Record, item: asyncpg.Record, person_id: uuid.UUID
) -> None:
    """Sign the person up for the item (locked): a place while there is one, else the end of the line.
    Once per person per item: someone already on it keeps their state."""
    if await store.signup_of(conn, item["item_id"], person_id) is None:
        taken = await store.places_taken(conn, item["item_id"])
        state = "signed_up" if taken < item["capacity"] else "waiting"
        await store.add_signup(conn, row["list_id"], item["item_id"], person_id, state)


async def _leave(
    conn: asyncpg.Connection, row: asyncpg.Record, item: asyncpg.Record, person_id: uuid.UUID
) -> None:
    """Take the person off the item (locked); a place freed goes to the first waiting, who is told."""
    if await store.remove_signup(conn, item["item_id"], person_id) == "signed_up":
        await promote_waiting(conn, row, item["item_id"], item["title"], item["capacity"])


async def _announce(
    conn: asyncpg.Connection,
    list_id: uuid.UUID,
    group_id: uuid.UUID,
    author_id: uuid.UUID,
    command: CreateHelperList,
) -> None:
    """The list's post in the group's feed (the sign-up reference, not counted against the posts per
    day), and its PostPublished: a new list matters to the whole group, so parents are told as of any
    post (seed rule 8). Helper lists have no event of their own for the notifier to announce them."""
    body = announcement_body(
        command.description or "", [(item.title, item.capacity) for item in command.items]
    )
    (post_id,) = await signups.announce(
        conn,
        kind="helper_list",
        signup_id=list_id,
        group_ids=[group_id],
        author_id=author_id,
        title=command.title,
        body=body,
    )
    post = await publishing.written_post(conn, post_id)
    assert post is not None
    await publish(conn, published_event(post, []), post["school_id"])


async def create_list(request: web.Request) -> web.Response:
    """A teacher's list for their group (201, HelperListView); 422 for a deadline that has passed, is
    more than a year ahead or after the activity's day begins."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    command = await read_json(request, CreateHelperList)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        group = await store.group_for(conn, group_id, caller.person_id)
        if group is None:
            raise NotFound("no such group")
        if group["role"] != "teacher":
            raise Forbidden("only the group's teachers post helper lists")
        problem = deadline_problem(
            command.deadline, command.activity_on, group["now"], group["time_zone"], group["year_ends_on"]
        )
        if problem:
            raise ValidationFailed(
                "the deadline is not accepted", [{"field": "deadline", "problem": problem}]
            )
        list_id = uuid.uuid4()
        await store.insert_list(
            conn,
            list_id,
            group,
            caller.person_id,
            command.title,
            command.description or "",
            command.activity_on,
            command.deadline,
            [(item.title, item.capacity) for item in command.items],
        )
        await _announce(conn, list_id, group_id, caller.person_id, command)
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view, status=201)


async def group_lists(request: web.Request) -> web.Response:
    """HelperListsPage: the group's lists, newest first, for its members."""
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    async with request.app[POOL].acquire() as conn:
        if await store.group_for(conn, group_id, caller.person_id) is None:
            raise NotFound("no such group")
        rows = await store.group_lists(conn, group_id, caller.person_id)
        views = await _views(conn, rows, caller.person_id)
    return json_response(HelperListsPage(lists=views))


async def get_list(request: web.Request) -> web.Response:
    """One list with figures per item and the caller's own sign-ups."""
    caller = require_caller(request)
    list_id = path_id(request, "list_id")
    async with request.app[POOL].acquire() as conn:
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view)


async def sign_up(request: web.Request) -> web.Response:
    """A parent signs up for an item: a place while there is one, else the end of the waiting list.
    Once per parent per item: repeating it changes nothing. 409 once the list is closed."""
    caller = require_caller(request)
    list_id, item_id = path_id(request, "list_id"), path_id(request, "item_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _list(conn, list_id, caller.person_id, "guardian", lock="share")
        _open_for_parents(row)
        await _join(conn, row, await _item(conn, row, item_id), caller.person_id)
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view)


async def withdraw(request: web.Request) -> web.Response:
    """A parent withdraws from an item (none to withdraw is fine); a place freed goes to the first on
    the waiting list in the same transaction. 409 once the list is closed."""
    caller = require_caller(request)
    list_id, item_id = path_id(request, "list_id"), path_id(request, "item_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _list(conn, list_id, caller.person_id, "guardian", lock="share")
        _open_for_parents(row)
        await _leave(conn, row, await _item(conn, row, item_id), caller.person_id)
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view)


def _edit_problem(
    row: asyncpg.Record, command: UpdateHelperList, activity_on: date | None, deadline: datetime
) -> None:
    """A new deadline is checked as a new list's; a new activity day must not begin before the deadline."""
    given = command.model_fields_set
    if "deadline" in given:
        problem = deadline_problem(deadline, activity_on, row["now"], row["time_zone"], row["year_ends_on"])
        if problem:
            raise ValidationFailed(
                "the deadline is not accepted", [{"field": "deadline", "problem": problem}]
            )
    elif (
        "activity_on" in given
        and activity_on is not None
        and deadline > day_start(activity_on, row["time_zone"])
    ):
        problem = f"the activity's day begins before the deadline ({local(deadline, row['time_zone']):%Y-%m-%d %H:%M})"
        raise ValidationFailed(
            "the activity's day is not accepted", [{"field": "activity_on", "problem": problem}]
        )


async def update_list(request: web.Request) -> web.Response:
    """A teacher edits the list's title, description, activity day or deadline (``{}``: nothing
    changes); the list's post in the feed follows, and PostUpdated tells the copies (nobody is
    notified again). 422 for a deadline not accepted for a new list either."""
    caller = require_caller(request)
    list_id = path_id(request, "list_id")
    command = await read_json(request, UpdateHelperList)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _list(conn, list_id, caller.person_id, "teacher", lock="update")
        given = command.model_fields_set
        title = command.title if "title" in given else row["title"]
        description = (command.description or "") if "description" in given else row["description"]
        activity_on = command.activity_on if "activity_on" in given else row["activity_on"]
        deadline = command.deadline if "deadline" in given else row["deadline"]
        _edit_problem(row, command, activity_on, deadline)
        if given:
            await store.update_list(conn, list_id, title, description, activity_on, deadline)
        if given & {"title", "description"}:
            await _follow_in_feed(conn, row, title, description, caller.person_id)
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view)


async def _follow_in_feed(
    conn: asyncpg.Connection, row: asyncpg.Record, title: str, description: str, editor_id: uuid.UUID
) -> None:
    """The list's post in the feed takes its title and text (the description, or else the items with
    their places), and PostUpdated tells the copies (nobody is notified again)."""
    items = await store.item_figures(conn, [row["list_id"]], editor_id)
    body = announcement_body(description, [(i["title"], i["capacity"]) for i in items])
    for post in await store.update_announcement(conn, row["list_id"], title, body):
        event = PostUpdated(
            post_id=post["post_id"],
            group_id=post["group_id"],
            author_id=post["author_id"],
            editor_id=editor_id,
            excerpt=excerpt(body),
            title=title,
            published=post["published_at"] is not None,
        )
        await publish(conn, event, row["school_id"])


async def update_item(request: web.Request) -> web.Response:
    """A teacher edits an item's title or capacity; a higher capacity promotes the first waiting
    parents. 409 for a capacity below the parents signed up."""
    caller = require_caller(request)
    list_id, item_id = path_id(request, "list_id"), path_id(request, "item_id")
    command = await read_json(request, UpdateItem)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _list(conn, list_id, caller.person_id, "teacher", lock="share")
        item = await _item(conn, row, item_id)
        given = command.model_fields_set
        title = command.title if "title" in given else item["title"]
        capacity = command.capacity if "capacity" in given else item["capacity"]
        # As for a new list (CreateHelperList.distinct_titles): two items of one title cannot be told apart.
        if "title" in given and title.casefold() in {
            other.casefold() for other in await store.other_item_titles(conn, list_id, item_id)
        }:
            raise ValidationFailed(
                "the item is not accepted",
                [{"field": "title", "problem": "another item of this list has this title"}],
            )
        taken = await store.places_taken(conn, item_id)
        if capacity < taken:
            raise Conflict(
                f"{taken} parents have signed up for this item: the capacity can go down to {taken}, "
                "not below",
                {"signed_up": taken, "capacity": capacity},
            )
        if given:
            await store.update_item(conn, item_id, title, capacity)
            await promote_waiting(conn, row, item_id, title, capacity)
            if not row["description"]:  # the post lists the items with their places: it follows
                await _follow_in_feed(conn, row, row["title"], row["description"], caller.person_id)
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view)


async def close_list(request: web.Request) -> web.Response:
    """A teacher closes the list before its deadline: parents change nothing from then on; closing a
    closed list changes nothing."""
    caller = require_caller(request)
    list_id = path_id(request, "list_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await _list(conn, list_id, caller.person_id, "teacher", lock="update")
        await store.close_list(conn, list_id, caller.person_id)
        view = await _view(conn, list_id, caller.person_id)
    return json_response(view)


async def _signups_view(
    conn: asyncpg.Connection, row: asyncpg.Record, person_id: uuid.UUID
) -> HelperListSignups:
    items = await store.item_figures(conn, [row["list_id"]], person_id)
    by_item: dict[tuple[uuid.UUID, str], list[Helper]] = defaultdict(list)
    for person in await store.signups(conn, row["list_id"]):
        by_item[(person["item_id"], person["status"])].append(
            Helper(
                person_id=person["person_id"],
                display_name=person["display_name"],
                children=list(person["children"]),
                signed_at=person["signed_at"],
                promoted_at=person["promoted_at"],
            )
        )
    return HelperListSignups(
        list_id=row["list_id"],
        title=row["title"],
        status=list_status(row["deadline"], row["closed_at"], row["now"]),
        items=[
            ItemSignups(
                item_id=item["item_id"],
                title=item["title"],
                capacity=item["capacity"],
                signed_up=by_item[(item["item_id"], "signed_up")],
                waiting=by_item[(item["item_id"], "waiting")],
            )
            for item in items
        ],
    )


async def list_signups(request: web.Request) -> web.Response:
    """HelperListSignups: who signed up and who waits per item, by name; for the group's teachers."""
    caller = require_caller(request)
    list_id = path_id(request, "list_id")
    async with request.app[POOL].acquire() as conn:
        row = await _list(conn, list_id, caller.person_id, "teacher")
        view = await _signups_view(conn, row, caller.person_id)
    return json_response(view)


async def sign_up_parent(request: web.Request) -> web.Response:
    """A teacher signs a parent of the group up for an item on their behalf (a parent who phoned, or
    one past the deadline): as a parent's own sign-up, but also after the deadline or a close. 404 for
    someone who is no parent in the group now."""
    caller = require_caller(request)
    list_id, item_id = path_id(request, "list_id"), path_id(request, "item_id")
    person_id = path_id(request, "person_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _list(conn, list_id, caller.person_id, "teacher", lock="share")
        item = await _item(conn, row, item_id)
        if await membership_copy.role_in(conn, row["group_id"], person_id) != "guardian":
            raise NotFound("no such parent in this group")
        await _join(conn, row, item, person_id)
        view = await _signups_view(conn, row, caller.person_id)
    return json_response(view)


async def withdraw_parent(request: web.Request) -> web.Response:
    """A teacher takes a parent off an item (also one who left the group), also after the deadline or
    a close; the place goes to the first waiting, who is told. Nobody to take off is fine."""
    caller = require_caller(request)
    list_id, item_id = path_id(request, "list_id"), path_id(request, "item_id")
    person_id = path_id(request, "person_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _list(conn, list_id, caller.person_id, "teacher", lock="share")
        await _leave(conn, row, await _item(conn, row, item_id), person_id)
        view = await _signups_view(conn, row, caller.person_id)
    return json_response(view)
