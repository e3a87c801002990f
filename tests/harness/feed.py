"""What the feed and like tests share: a school whose groups may get several posts a day, posting,
and reading the feed in its documented shape."""

import uuid
from typing import Any

from posts.feed.domain import FeedPage
from shared.app import POOL
from tests.harness.school import Person, School, add_group, add_person, make_school, wait_until_linked
from tests.harness.system import System, eventually


async def allow_posts_per_day(system: System, school: School, most: int = 10) -> None:
    """Raise the school's posting limit (seed rule 5, default 1 a day) and wait for posts' copy of it:
    feed tests write several posts to a group in one day."""
    status, body = await system.call(
        "PATCH",
        "identity",
        f"/schools/{school.school_id}",
        school.admin.token,
        json={"max_posts_per_day": most},
    )
    assert status == 200, body

    async def copied() -> bool:
        found = (
            await system.services["posts"]
            .app[POOL]
            .fetchval("SELECT max_posts_per_day FROM schools WHERE school_id = $1", school.school_id)
        )
        return bool(found == most)

    await eventually(copied, what="the posting limit copied to posts")


async def post(system: System, teacher: Person, group: uuid.UUID, body: str) -> dict[str, Any]:
    status, created = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Nieuws", "body": body}
    )
    assert status == 201, created
    return dict(created)


async def feed(system: System, person: Person, **query: Any) -> dict[str, Any]:
    status, page = await system.call("GET", "posts", "/feed", person.token, params=query)
    assert status == 200, page
    FeedPage.model_validate(page)  # the JSON PostgreSQL builds has the documented shape
    return dict(page)


def ids(page: dict[str, Any]) -> list[str]:
    return [p["post_id"] for p in page["posts"]]


async def school_with_two_groups(system: System) -> tuple[School, Person, Person]:
    """A teacher of Groep 3 and Groep 5, and a parent with a child in each."""
    school = await make_school(system)
    await allow_posts_per_day(system, school)
    for name in ("Groep 3", "Groep 5"):
        await add_group(system, school, name)
    teacher = await add_person(system, school, "juf", "teacher", "Groep 3", "Groep 5")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 3", "Groep 5")
    for person in (teacher, parent):
        for name in ("Groep 3", "Groep 5"):
            await wait_until_linked(system, person, school.groups[name])
    return school, teacher, parent
