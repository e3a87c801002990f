"""The feed and single posts through the running system: newest first across a parent's groups,
paged with ``limit`` and ``cursor``, gone once the parent's link to the group ends; bodies trimmed."""

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from shared.app import POOL
from tests.harness.feed import feed, ids, post, school_with_two_groups
from tests.harness.school import Person, add_person, wait_until_linked
from tests.harness.system import System, eventually


async def test_the_feed_shows_the_posts_of_all_a_parents_groups_newest_first(system: System) -> None:
    school, teacher, parent = await school_with_two_groups(system)
    only_five = await add_person(system, school, "ouder5", "guardian", "Groep 5")
    await wait_until_linked(system, only_five, school.groups["Groep 5"])
    g3, g5 = school.groups["Groep 3"], school.groups["Groep 5"]
    posts = [
        await post(system, teacher, g3, "Groep 3: gym"),
        await post(system, teacher, g5, "Groep 5: excursie"),
        await post(system, teacher, g3, "Groep 3: voorlezen"),
        await post(system, teacher, g5, "Groep 5: rapport"),
    ]

    page = await feed(system, parent)
    assert ids(page) == [p["post_id"] for p in reversed(posts)]
    assert [p["group_name"] for p in page["posts"]] == ["Groep 5", "Groep 3", "Groep 5", "Groep 3"]
    stamps = [datetime.fromisoformat(p["published_at"]) for p in page["posts"]]
    assert stamps == sorted(stamps, reverse=True)
    assert page["next_cursor"] is None

    assert ids(await feed(system, only_five)) == [posts[3]["post_id"], posts[1]["post_id"]]


async def all_pages(system: System, person: Person, limit: int) -> list[list[str]]:
    """The feed page by page, each page asked for with the previous page's next_cursor."""
    pages: list[list[str]] = []
    query: dict[str, Any] = {"limit": limit}
    while True:
        page = await feed(system, person, **query)
        pages.append(ids(page))
        assert len(pages) < 50, "the feed does not end"
        if page["next_cursor"] is None:
            return pages
        query = {"limit": limit, "cursor": page["next_cursor"]}


async def test_the_feed_pages_with_limit_and_cursor_without_gaps_or_repeats(system: System) -> None:
    school, teacher, parent = await school_with_two_groups(system)
    groups = [school.groups["Groep 3"], school.groups["Groep 5"]]
    written = [await post(system, teacher, groups[i % 2], f"Bericht {i}") for i in range(5)]
    newest_first = [p["post_id"] for p in reversed(written)]

    assert await all_pages(system, parent, 2) == [newest_first[0:2], newest_first[2:4], newest_first[4:]]
    # A page that is exactly full still points on; the page after it is empty and ends the feed.
    assert await all_pages(system, parent, 1) == [[post_id] for post_id in newest_first] + [[]]
    assert await all_pages(system, parent, 5) == [newest_first, []]
    assert await all_pages(system, parent, 100) == [newest_first]
    assert ids(await feed(system, parent)) == newest_first  # the default limit holds them all


async def test_posts_sharing_a_timestamp_are_not_lost_between_pages(system: System) -> None:
    school, teacher, parent = await school_with_two_groups(system)
    pool = system.services["posts"].app[POOL]
    first = await post(system, teacher, school.groups["Groep 3"], "Eerst")
    # Two posts in one clock tick cannot be forced through the API; these rows are what create_post
    # writes, at the very same time as the first post, in both of the parent's groups.
    for group in (school.groups["Groep 5"], school.groups["Groep 3"]):
        await pool.execute(
            """INSERT INTO posts (post_id, group_id, school_id, author_id, body, created_at, published_at)
               SELECT $1, $2, school_id, author_id, 'Tegelijk', created_at, published_at
               FROM posts WHERE post_id = $3""",
            uuid.uuid4(),
            group,
            uuid.UUID(first["post_id"]),
        )
    await post(system, teacher, school.groups["Groep 3"], "Laatst")
    everything = ids(await feed(system, parent))
    assert len(everything) == 4
    for limit in (1, 2, 3):
        pages = await all_pages(system, parent, limit)
        assert [post_id for page in pages for post_id in page] == everything, limit


def cursor_of(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


async def test_a_bad_feed_query_is_refused_with_422_naming_the_parameter(system: System) -> None:
    _school, _teacher, parent = await school_with_two_groups(system)
    for query, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "tien"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"cursor": "gisteren"}, "cursor"),
        ({"cursor": "2026-09-01T08:30:00+00:00"}, "cursor"),
        ({"cursor": cursor_of({"published_at": "2026-09-01T08:30:00Z"})}, "cursor"),
        (
            {"cursor": cursor_of({"published_at": "2026-09-01T08:30:00", "post_id": str(uuid.uuid4())})},
            "cursor",
        ),
        ({"cursor": cursor_of({"published_at": "gisteren", "post_id": str(uuid.uuid4())})}, "cursor"),
        ({"cursor": cursor_of(["2026-09-01T08:30:00Z", str(uuid.uuid4())])}, "cursor"),
        ({"cursor": "x" * 201}, "cursor"),
        ({"before": "2026-09-01T08:30:00+00:00"}, "before"),
        ({"page": "2"}, "page"),
    ):
        status, body = await system.call("GET", "posts", "/feed", parent.token, params=query)
        assert status == 422, (query, status, body)
        assert body["error"]["code"] == "validation_failed"
        assert [d["field"] for d in body["error"]["details"]] == [field], (query, body)


async def test_a_made_up_cursor_that_reads_well_is_never_a_500(system: System) -> None:
    school, teacher, parent = await school_with_two_groups(system)
    written = await post(system, teacher, school.groups["Groep 3"], "Hallo")
    for published_at in (
        "2999-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
    ):
        made_up = cursor_of({"published_at": published_at, "post_id": str(uuid.uuid4())})
        status, body = await system.call("GET", "posts", "/feed", parent.token, params={"cursor": made_up})
        assert status in (200, 422), (published_at, status, body)
        if status == 200:
            expected = [written["post_id"]] if published_at.startswith(("2999", "9999")) else []
            assert ids(body) == expected, published_at


async def test_when_a_parents_child_leaves_the_group_its_posts_are_gone_for_that_parent(
    system: System,
) -> None:
    school, teacher, parent = await school_with_two_groups(system)
    g3, g5 = school.groups["Groep 3"], school.groups["Groep 5"]
    other_parent = await add_person(system, school, "ouder2", "guardian", "Groep 3")
    await wait_until_linked(system, other_parent, g3)
    in_three = await post(system, teacher, g3, "Alleen voor groep 3")
    in_five = await post(system, teacher, g5, "Alleen voor groep 5")
    assert ids(await feed(system, parent)) == [in_five["post_id"], in_three["post_id"]]

    # The parent's child moves from groep 3 to groep 5 mid-year: the parent follows.
    child = school.children["ouder-kind0"]
    status, body = await system.call(
        "PUT", "identity", f"/children/{child}/placement", school.admin.token, json={"group_id": str(g5)}
    )
    assert status == 200, body

    async def gone() -> bool:
        status, _ = await system.call("GET", "posts", f"/posts/{in_three['post_id']}", parent.token)
        return status == 404 and ids(await feed(system, parent)) == [in_five["post_id"]]

    await eventually(gone, what="the post gone for the unlinked parent")
    status, body = await system.call("GET", "posts", f"/posts/{in_three['post_id']}", parent.token)
    assert status == 404
    assert body["error"]["code"] == "not_found"
    # The same token, still valid: the service's own copy of the link decides.
    status, body = await system.call(
        "POST", "posts", f"/groups/{g3}/posts", teacher.token, json={"title": "Nieuw", "body": "Nieuw"}
    )
    assert status == 201, body
    assert ids(await feed(system, parent)) == [in_five["post_id"]]
    # Everyone else still linked sees what they saw.
    for person in (other_parent, teacher):
        status, body = await system.call("GET", "posts", f"/posts/{in_three['post_id']}", person.token)
        assert status == 200, body

    # A parent whose only child leaves the school has an empty feed.
    status, body = await system.call(
        "POST", "identity", f"/children/{school.children['ouder2-kind0']}/leave", school.admin.token, json={}
    )
    assert status == 200, body

    async def empty() -> bool:
        return not (await feed(system, other_parent))["posts"]

    await eventually(empty, what="an empty feed for the unlinked parent")

    # Placed back, the parent reads the group again.
    status, body = await system.call(
        "PUT", "identity", f"/children/{child}/placement", school.admin.token, json={"group_id": str(g3)}
    )
    assert status == 200, body

    async def back() -> bool:
        status, _ = await system.call("GET", "posts", f"/posts/{in_three['post_id']}", parent.token)
        return status == 200

    await eventually(back, what="the post visible again after relinking")


async def test_a_teachers_post_body_is_trimmed(system: System) -> None:
    school, teacher, parent = await school_with_two_groups(system)
    created = await post(
        system, teacher, school.groups["Groep 3"], "\n  Morgen studiedag.\n\nGeen school!  \t\n"
    )
    assert created["body"] == "Morgen studiedag.\n\nGeen school!"
    status, read = await system.call("GET", "posts", f"/posts/{created['post_id']}", parent.token)
    assert status == 200, read
    assert read["body"] == "Morgen studiedag.\n\nGeen school!"
    assert (await feed(system, parent))["posts"][0]["body"] == "Morgen studiedag.\n\nGeen school!"


async def test_a_blank_post_body_is_refused_with_422_and_nothing_is_written(system: System) -> None:
    school, teacher, _parent = await school_with_two_groups(system)
    pool = system.services["posts"].app[POOL]

    async def written() -> tuple[int, int]:
        posts = await pool.fetchval("SELECT count(*) FROM posts WHERE school_id = $1", school.school_id)
        events = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE envelope->>'school_id' = $1", str(school.school_id)
        )
        return posts, events

    before = await written()
    for blank in ("", " ", "\n\t  \r\n", "\u00a0\u2003"):
        status, body = await system.call(
            "POST",
            "posts",
            f"/groups/{school.groups['Groep 3']}/posts",
            teacher.token,
            json={"title": "Leeg", "body": blank},
        )
        assert status == 422, (repr(blank), status, body)
        assert body["error"]["code"] == "validation_failed"
        assert [d["field"] for d in body["error"]["details"]] == ["body"], body
    assert await written() == before
