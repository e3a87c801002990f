"""Likes (seed rule 9) through the running system: one per account per post, like and unlike
repeatable without effect, the count exact however many requests arrive at once."""

import asyncio
import random
import uuid
from typing import Any

from posts.feed.domain import LikeState
from shared.app import POOL
from tests.harness.feed import allow_posts_per_day, feed, post
from tests.harness.school import Person, add_person, make_class, wait_until_linked
from tests.harness.system import System


async def like(system: System, person: Person, post_id: str, method: str = "PUT") -> tuple[int, Any]:
    return await system.call(method, "posts", f"/posts/{post_id}/like", person.token)


async def test_liking_twice_counts_once_and_unliking_twice_leaves_none(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 4")
    written = await post(system, teacher, group, "Schoolreisje!")
    post_id = written["post_id"]

    for _ in range(2):
        status, body = await like(system, parent, post_id)
        assert status == 200, body
        assert LikeState.model_validate(body) == LikeState(post_id=post_id, liked=True, like_count=1)
    shown = (await feed(system, parent))["posts"][0]
    assert (shown["liked"], shown["like_count"]) == (True, 1)
    status, seen_by_teacher = await system.call("GET", "posts", f"/posts/{post_id}", teacher.token)
    assert (seen_by_teacher["liked"], seen_by_teacher["like_count"]) == (False, 1)

    for _ in range(2):
        status, body = await like(system, parent, post_id, "DELETE")
        assert status == 200, body
        assert (body["liked"], body["like_count"]) == (False, 0)
    shown = (await feed(system, parent))["posts"][0]
    assert (shown["liked"], shown["like_count"]) == (False, 0)


async def test_like_counts_stay_exact_under_20_concurrent_likes_and_unlikes(system: System) -> None:
    school, group, teacher, first = await make_class(system, "Groep 6")
    parents = [first]
    for i in range(3):
        parents.append(await add_person(system, school, f"ouder{i}", "guardian", "Groep 6"))
    for parent in parents:
        await wait_until_linked(system, parent, group)
    post_id = (await post(system, teacher, group, "Kijk eens!"))["post_id"]
    pool = system.services["posts"].app[POOL]

    async def stored() -> tuple[int, int]:
        row = await pool.fetchrow(
            "SELECT like_count, (SELECT count(*) FROM likes WHERE post_id = $1) AS rows FROM posts WHERE post_id = $1",
            uuid.UUID(post_id),
        )
        return row["like_count"], row["rows"]

    async def at_once(methods: list[tuple[Person, str]]) -> None:
        results = await asyncio.gather(*(like(system, person, post_id, method) for person, method in methods))
        assert all(status == 200 for status, _ in results), results

    # 20 likes, five from each of four parents: four likes.
    await at_once([(p, "PUT") for p in parents for _ in range(5)])
    assert await stored() == (4, 4)
    # 20 likes and unlikes mixed: whatever the order, the count is the number of likes stored.
    mixed = [(p, random.choice(["PUT", "DELETE"])) for p in parents for _ in range(5)]
    random.shuffle(mixed)
    await at_once(mixed)
    count, rows = await stored()
    assert count == rows
    _status, read = await system.call("GET", "posts", f"/posts/{post_id}", teacher.token)
    assert read["like_count"] == rows
    # 20 unlikes: none left.
    await at_once([(p, "DELETE") for p in parents for _ in range(5)])
    assert await stored() == (0, 0)


async def test_only_parents_of_the_group_like_its_posts(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 7")
    await allow_posts_per_day(system, school)
    post_id = (await post(system, teacher, group, "Hallo"))["post_id"]
    _other_school, _other_group, other_teacher, other_parent = await make_class(system, "Groep 7")

    status, body = await like(system, teacher, post_id)
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    for person in (other_parent, other_teacher):
        for method in ("PUT", "DELETE"):
            status, body = await like(system, person, post_id, method)
            assert status == 404, body
            assert body["error"]["code"] == "not_found"
    for unknown in (str(uuid.uuid4()), "niet-een-id", "1"):
        status, body = await like(system, parent, unknown)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"
    status, body = await system.call("PUT", "posts", f"/posts/{post_id}/like", None)
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
