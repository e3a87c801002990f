"""A new school year across the services (issue 5): after the switch a parent sees the new group
and nothing of the old one in posts, media and the notifier; a child who leaves takes their
guardians' access to the child's group with them at once, and only that.

The switch is brought to today instead of waiting a year: the old year ends yesterday and the new
one starts today (the school's local dates, in identity's tables), then the year job's own
``switch_years`` runs.
"""

import uuid
from typing import Any

import asyncpg

from identity.schools.years import switch_years
from shared.app import POOL
from shared.testing.images import jpeg_with_gps
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    add_school_year,
    choose,
    make_school,
    redeem_from_mail,
    register_push,
    upload_photo,
    wait_until_linked,
)
from tests.harness.system import System, eventually

OLD, NEW = "2026-2027", "2027-2028"


def identity_pool(system: System) -> asyncpg.Pool:
    return system.services["identity"].app[POOL]


async def promote(system: System, school: School, teacher: Person) -> uuid.UUID:
    """Next year made and prepared: Groep 3B becomes Groep 4B with the same teacher."""
    year = await add_school_year(system, school, NEW)
    status, plan = await system.call(
        "POST",
        "identity",
        f"/school-years/{year['school_year_id']}/promotion",
        school.admin.token,
        json={
            "from_school_year": OLD,
            "groups": [
                {
                    "from_group_id": str(school.groups["Groep 3B"]),
                    "name": "Groep 4B",
                    "teachers": [str(teacher.person_id)],
                }
            ],
        },
    )
    assert status == 200, plan
    school.groups["Groep 4B"] = uuid.UUID(plan["groups"][0]["group_id"])
    return school.groups["Groep 4B"]


async def switch_today(system: System, school: School) -> None:
    """Move the switch to today's local midnight and run the year job's switch."""
    async with identity_pool(system).acquire() as conn, conn.transaction():
        today = await conn.fetchval(
            "SELECT (now() AT TIME ZONE time_zone)::date FROM schools WHERE school_id = $1", school.school_id
        )
        await conn.execute(
            "UPDATE school_years SET ends_on = $3::date - 1 WHERE school_id = $1 AND name = $2",
            school.school_id,
            OLD,
            today,
        )
        await conn.execute(
            "UPDATE school_years SET starts_on = $3 WHERE school_id = $1 AND name = $2",
            school.school_id,
            NEW,
            today,
        )
    report = await switch_years(identity_pool(system))
    assert not report.failed
    current = await identity_pool(system).fetchval(
        "SELECT y.name FROM schools s JOIN school_years y ON y.school_year_id = s.current_year_id WHERE s.school_id = $1",
        school.school_id,
    )
    assert current == NEW


def mails_to(system: System, person: Person, after: int = 0) -> list[Any]:
    return [
        m for m in system.smtp.messages[after:] if person.email.lower() in (r.lower() for r in m.rcpt_tos)
    ]


async def test_after_the_switch_a_parent_sees_the_new_group_and_nothing_of_the_old_one(
    system: System,
) -> None:
    school = await make_school(system)
    old_group = await add_group(system, school, "Groep 3B")
    teacher = await add_person(system, school, "juf", "teacher", "Groep 3B")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 3B")
    subscription = await register_push(system, parent)
    await choose(system, parent, "both")  # told by email and push (with a device the default is push only)
    for person in (teacher, parent):
        await wait_until_linked(system, person, old_group)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(800, 600), "image/jpeg", old_group))[
        "photo_id"
    ]
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{old_group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Laatste schooldag!", "photo_ids": [photo_id]},
    )
    assert status == 201, post
    await eventually(
        lambda: _told(system, parent, subscription, "Groep 3B"), what="the parent told of the old post"
    )
    status, _ = await system.call("GET", "posts", f"/posts/{post['post_id']}", parent.token)
    assert status == 200
    status, _ = await system.call("GET", "media", f"/photos/{photo_id}", parent.token)
    assert status == 200

    new_group = await promote(system, school, teacher)
    # Prepared, not yet switched: the parent does not see next year's group yet.
    await wait_until_linked(system, parent, old_group)
    await switch_today(system, school)

    for person in (teacher, parent):
        await wait_until_linked(system, person, new_group)
        await wait_until_linked(system, person, old_group, linked=False)
    # Posts and media: the old group's post and photo are gone for the parent.
    status, feed = await system.call("GET", "posts", "/feed", parent.token)
    assert status == 200, feed
    assert post["post_id"] not in [p["post_id"] for p in feed["posts"]]
    status, body = await system.call("GET", "posts", f"/posts/{post['post_id']}", parent.token)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await system.call("GET", "media", f"/photos/{photo_id}", parent.token)
    assert (status, body["error"]["code"]) == (404, "not_found")
    # Nobody belongs to the old group any more: no one can post to it, so no one is told of it.
    mails_before = len(system.smtp.messages)
    pushes_before = len(system.push.pushes_for(subscription))
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{old_group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Nog één?"},
    )
    assert status in (403, 404), body
    # The new group works end to end: the parent is told of its post, and of nothing else.
    status, new_post = await system.call(
        "POST",
        "posts",
        f"/groups/{new_group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Welkom in groep 4!"},
    )
    assert status == 201, new_post
    await eventually(
        lambda: _told(system, parent, subscription, "Groep 4B", mails_before, pushes_before),
        what="the parent told of the new group's post",
    )
    [mail] = mails_to(system, parent, mails_before)
    assert "Groep 3B" not in mail.message["Subject"]
    pushes = system.push.pushes_for(subscription)[pushes_before:]
    assert [p.json()["title"] for p in pushes if "Groep 3B" in p.json()["title"]] == []
    status, feed = await system.call("GET", "posts", "/feed", parent.token)
    assert [p["post_id"] for p in feed["posts"]] == [new_post["post_id"]]


async def _told(
    system: System,
    person: Person,
    subscription: dict[str, Any],
    group_name: str,
    mails_after: int = 0,
    pushes_after: int = 0,
) -> bool:
    mailed = any(group_name in m.message["Subject"] for m in mails_to(system, person, mails_after))
    pushed = any(group_name in p.json()["title"] for p in system.push.pushes_for(subscription)[pushes_after:])
    return mailed and pushed


async def test_a_child_who_leaves_takes_the_guardians_access_to_that_group_at_once_and_only_that(
    system: System,
) -> None:
    school = await make_school(system)
    group_3b = await add_group(system, school, "Groep 3B")
    group_5a = await add_group(system, school, "Groep 5A")
    teacher = await add_person(system, school, "juf", "teacher", "Groep 3B", "Groep 5A")
    # Moeder has Anna in 3B and Bram in 5A; Vader is a guardian of Anna only.
    mother = await add_person(system, school, "moeder", "guardian", "Groep 3B", "Groep 5A")
    anna = school.children["moeder-kind0"]
    father_email = f"vader.{uuid.uuid4().hex[:8]}@ouders.example.nl"
    before = len(system.smtp.messages)
    status, body = await system.call(
        "POST", "identity", f"/children/{anna}/guardians", school.admin.token, json={"email": father_email}
    )
    assert status == 201, body
    father = await redeem_from_mail(system, father_email, after=before)
    for person, group in ((mother, group_3b), (mother, group_5a), (father, group_3b), (teacher, group_3b)):
        await wait_until_linked(system, person, group)
    posts = {}
    for group in (group_3b, group_5a):
        status, post = await system.call(
            "POST",
            "posts",
            f"/groups/{group}/posts",
            teacher.token,
            json={"title": "Nieuws", "body": "Hallo!"},
        )
        assert status == 201, post
        posts[group] = post["post_id"]

    status, body = await system.call(
        "POST", "identity", f"/children/{anna}/leave", school.admin.token, json={}
    )

    assert status == 200, body
    # At once in identity: in the same transaction as the leaving.
    active = await identity_pool(system).fetch(
        "SELECT group_id, person_id FROM memberships WHERE person_id = ANY($1) AND active",
        [mother.person_id, father.person_id],
    )
    assert {(r["group_id"], r["person_id"]) for r in active} == {(group_5a, mother.person_id)}
    # And in every service's copy as soon as the events arrive.
    await wait_until_linked(system, mother, group_3b, linked=False)
    await wait_until_linked(system, father, group_3b, linked=False)
    await wait_until_linked(system, mother, group_5a)
    for person in (mother, father):
        status, body = await system.call("GET", "posts", f"/posts/{posts[group_3b]}", person.token)
        assert status == 404, body
    status, feed = await system.call("GET", "posts", "/feed", mother.token)
    assert [p["post_id"] for p in feed["posts"]] == [posts[group_5a]]
    # Vader has no other child at the school: nothing of it is his any more.
    status, feed = await system.call("GET", "posts", "/feed", father.token)
    assert feed["posts"] == []
    for service in ("posts", "media", "notifier"):
        rows = (
            await system.services[service]
            .app[POOL]
            .fetchval("SELECT count(*) FROM memberships WHERE person_id = $1 AND active", father.person_id)
        )
        assert rows == 0, service
