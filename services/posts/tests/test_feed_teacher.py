"""Reads ("seen") and the teacher's view of a group through the running system: opening a post marks
it seen once; teachers see per post how many families (children) saw it out of all, who likes it,
and the delivery figures the notifier reports."""

import uuid
from typing import Any

from posts.feed.domain import GroupPostsPage, PostView
from tests.harness.feed import post
from tests.harness.school import (
    Person,
    School,
    add_child,
    add_person,
    make_class,
    new_email,
    redeem_from_mail,
    wait_until_linked,
)
from tests.harness.system import System, eventually


async def group_view(system: System, teacher: Person, group: uuid.UUID) -> dict[str, Any]:
    status, page = await system.call("GET", "posts", f"/groups/{group}/posts", teacher.token)
    assert status == 200, page
    GroupPostsPage.model_validate(page)
    return dict(page["posts"][0])


async def two_parent_family(system: System, school: School, group_name: str) -> tuple[Person, Person]:
    """A child with two guardians, each with their own account: one family."""
    mum, dad = new_email("mama"), new_email("papa")
    before = len(system.smtp.messages)
    await add_child(system, school, "tweeling", group_name, [mum, dad])
    return await redeem_from_mail(system, mum, after=before), await redeem_from_mail(
        system, dad, after=before
    )


async def test_opening_a_post_marks_it_seen_once(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 2")
    post_id = (await post(system, teacher, group, "Voorleesweek"))["post_id"]
    status, read = await system.call("GET", "posts", "/feed", parent.token)
    assert read["posts"][0]["seen"] is False

    for _ in range(2):
        status, read = await system.call("GET", "posts", f"/posts/{post_id}", parent.token)
        assert status == 200, read
        assert PostView.model_validate(read).seen is True
    status, body = await system.call("PUT", "posts", f"/posts/{post_id}/seen", parent.token)
    assert status == 204, body
    status, page = await system.call("GET", "posts", "/feed", parent.token)
    assert page["posts"][0]["seen"] is True
    assert (await group_view(system, teacher, group))["seen_by_count"] == 1


async def test_the_teacher_sees_families_that_saw_a_post_who_likes_it_and_its_delivery(
    system: System,
) -> None:
    school, group, teacher, lonely = await make_class(system, "Groep 8")
    mum, dad = await two_parent_family(system, school, "Groep 8")
    other = await add_person(system, school, "ander", "guardian", "Groep 8")
    for person in (mum, dad, other):
        await wait_until_linked(system, person, group)
    post_id = (await post(system, teacher, group, "Kamp volgende week"))["post_id"]

    async def families_counted() -> bool:
        view = await group_view(system, teacher, group)
        return bool(view["families"]["total"] == 3)

    await eventually(families_counted, what="three families in the group")
    view = await group_view(system, teacher, group)
    assert view["families"] == {"seen": 0, "total": 3}
    assert (view["seen_by_count"], view["liked_by"], view["like_count"]) == (0, [], 0)

    # Both guardians of one child open it: one family. Another parent marks it seen from the feed.
    for person in (mum, dad, mum):
        status, _ = await system.call("GET", "posts", f"/posts/{post_id}", person.token)
        assert status == 200
    view = await group_view(system, teacher, group)
    assert view["families"] == {"seen": 1, "total": 3}
    assert view["seen_by_count"] == 2
    status, _ = await system.call("PUT", "posts", f"/posts/{post_id}/seen", other.token)
    assert status == 204
    for person in (dad, other):
        status, _ = await system.call("PUT", "posts", f"/posts/{post_id}/like", person.token)
        assert status == 200
    view = await group_view(system, teacher, group)
    assert view["families"] == {"seen": 2, "total": 3}
    assert view["seen_by_count"] == 3
    assert view["liked_by"] == [str(dad.person_id), str(other.person_id)]
    assert view["like_count"] == 2
    # The teacher reading it does not count as a family.
    status, _ = await system.call("GET", "posts", f"/posts/{post_id}", teacher.token)
    assert (await group_view(system, teacher, group))["families"]["seen"] == 2

    # The notifier mails each of the four parents and reports it.
    async def delivered() -> bool:
        delivery = (await group_view(system, teacher, group))["delivery"]
        return delivery is not None and delivery["delivered_email"] == 4 and delivery["pending"] == 0

    await eventually(delivered, within=60, what="the delivery figures reported")
    delivery = (await group_view(system, teacher, group))["delivery"]
    assert delivery["targeted"] == 4
    assert (delivery["failed"], delivery["held"]) == (0, 0)
    assert lonely.person_id != other.person_id


async def test_only_the_groups_teachers_see_its_figures(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 1")
    await post(system, teacher, group, "Welkom")
    _other, _other_group, other_teacher, _other_parent = await make_class(system, "Groep 1")

    status, body = await system.call("GET", "posts", f"/groups/{group}/posts", parent.token)
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"
    for group_id in (group, uuid.uuid4()):
        status, body = await system.call("GET", "posts", f"/groups/{group_id}/posts", other_teacher.token)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"
    for query in ({"limit": "0"}, {"cursor": "gisteren"}, {"page": "2"}):
        status, body = await system.call(
            "GET", "posts", f"/groups/{group}/posts", teacher.token, params=query
        )
        assert status == 422, (query, body)
        assert body["error"]["code"] == "validation_failed"
    status, body = await system.call("PUT", "posts", f"/posts/{uuid.uuid4()}/seen", parent.token)
    assert status == 404, body
    assert school.school_id != _other.school_id
