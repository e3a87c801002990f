"""Writing, editing and deleting posts through the running system: send later (appears and notifies
at its time, not before), edits that notify nobody, deletes that reach the feed, the photos and the
notifications not yet sent, announcements to many groups, who may do what, and bad input refused
whole."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from posts.publishing.jobs import publish_due
from shared.app import POOL
from shared.testing.images import png_bytes
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    make_class,
    make_school,
    upload_photo,
    wait_until_linked,
)
from tests.harness.system import System, eventually


def pool(system: System, service: str = "posts") -> asyncpg.Pool:
    return system.services[service].app[POOL]


async def write(system: System, person: Person, group: uuid.UUID, **fields: Any) -> tuple[int, Any]:
    body = {"title": "Schoolreis", "body": "Morgen gaan we naar de kinderboerderij.", **fields}
    return await system.call("POST", "posts", f"/groups/{group}/posts", person.token, json=body)


async def written(system: System, person: Person, group: uuid.UUID, **fields: Any) -> dict[str, Any]:
    status, body = await write(system, person, group, **fields)
    assert status == 201, body
    return dict(body)


async def read(system: System, person: Person, post_id: str) -> tuple[int, Any]:
    return await system.call("GET", "posts", f"/posts/{post_id}", person.token)


async def feed_ids(system: System, person: Person) -> list[str]:
    status, page = await system.call("GET", "posts", "/feed", person.token)
    assert status == 200, page
    return [p["post_id"] for p in page["posts"]]


async def notified(system: System, post_id: str) -> int:
    """Messages the notifier made for the post (emails and pushes)."""
    count: int = await pool(system, "notifier").fetchval(
        """SELECT count(d.*) FROM notifications n LEFT JOIN deliveries d USING (notification_id)
           WHERE n.post_id = $1""",
        uuid.UUID(post_id),
    )
    return count


async def handled(system: System, service: str, event_type: str, post_id: str) -> None:
    """Until ``service`` has handled every event of this type about the post."""
    event_ids = await pool(system).fetch(
        "SELECT event_id FROM outbox WHERE routing_key = $1 AND envelope->'payload'->>'post_id' = $2",
        event_type,
        post_id,
    )
    assert event_ids, (event_type, post_id)

    async def done() -> bool:
        found = await pool(system, service).fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", [r["event_id"] for r in event_ids]
        )
        return bool(found == len(event_ids))

    await eventually(done, what=f"{service} handled {event_type}")


async def admin_known_to_posts(system: System, school: School) -> None:
    async def known() -> bool:
        return bool(
            await pool(system).fetchval(
                "SELECT 'admin' = ANY(roles) FROM staff WHERE school_id = $1 AND person_id = $2",
                school.school_id,
                school.admin.person_id,
            )
        )

    await eventually(known, what="the school's admin copied to posts (StaffChanged)")


async def test_a_send_later_post_appears_and_notifies_at_its_time_not_before(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 3")
    at = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
    post = await written(system, teacher, group, publish_at=at.isoformat())
    post_id = post["post_id"]
    assert post["status"] == "scheduled"
    assert post["published_at"] is None
    assert datetime.fromisoformat(post["publish_at"]) == at

    # Before its time: the teacher sees it as scheduled; parents see nothing; nobody is told.
    status, body = await system.call("GET", "posts", f"/groups/{group}/scheduled-posts", teacher.token)
    assert status == 200, body
    assert [p["post_id"] for p in body["posts"]] == [post_id]
    assert (await read(system, parent, post_id))[0] == 404
    assert post_id not in await feed_ids(system, parent)
    status, body = await system.call("GET", "posts", f"/groups/{group}/scheduled-posts", parent.token)
    assert status == 403, body
    async with pool(system).acquire() as conn, conn.transaction():
        assert await publish_due(conn, at - timedelta(seconds=1)) == 0
    published = await pool(system).fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'posts.post_published' AND envelope->'payload'->>'post_id' = $1",
        post_id,
    )
    assert published == 0
    assert (
        await pool(system, "notifier").fetchval(
            "SELECT count(*) FROM notifications WHERE post_id = $1", uuid.UUID(post_id)
        )
        == 0
    )

    # Its time comes (the row's time moved to now rather than the test waiting a minute): the
    # periodic job, running in the service, publishes it within its round.
    await pool(system).execute("UPDATE posts SET publish_at = now() WHERE post_id = $1", uuid.UUID(post_id))

    async def appeared() -> bool:
        return (await read(system, parent, post_id))[0] == 200

    await eventually(appeared, within=30, what="the send-later post published by the job")
    assert post_id in await feed_ids(system, parent)

    async def told() -> bool:
        return await notified(system, post_id) >= 1

    await eventually(told, what="the parent notified")
    status, body = await system.call("GET", "posts", f"/groups/{group}/scheduled-posts", teacher.token)
    assert body["posts"] == []
    # Exactly one PostPublished, carrying what the notifier needs.
    rows = await pool(system).fetch(
        "SELECT envelope FROM outbox WHERE routing_key = 'posts.post_published' AND envelope->'payload'->>'post_id' = $1",
        post_id,
    )
    assert len(rows) == 1
    payload = rows[0]["envelope"]["payload"]
    assert payload["title"] == "Schoolreis"
    assert payload["urgent"] is False
    assert payload["published_at"] is not None


async def test_an_edit_changes_the_post_and_notifies_nobody_again(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 4")
    post = await written(system, teacher, group)
    post_id = post["post_id"]

    async def told() -> bool:
        unsent = await pool(system, "notifier").fetchval(
            """SELECT count(*) FILTER (WHERE d.status = 'pending') FROM notifications n
               JOIN deliveries d USING (notification_id) WHERE n.post_id = $1""",
            uuid.UUID(post_id),
        )
        return await notified(system, post_id) >= 1 and unsent == 0

    await eventually(told, what="the parent's mail about the post sent")
    mails_before = len(system.smtp.messages)
    messages_before = await notified(system, post_id)

    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{post_id}", teacher.token, json={"body": "Het wordt de dierentuin."}
    )
    assert status == 200, edited
    assert edited["title"] == "Schoolreis"  # left out: kept
    assert edited["body"] == "Het wordt de dierentuin."
    assert edited["updated_at"] is not None
    status, seen = await read(system, parent, post_id)
    assert status == 200, seen
    assert seen["body"] == "Het wordt de dierentuin."

    await handled(system, "notifier", "posts.post_updated", post_id)
    await handled(system, "media", "posts.post_updated", post_id)
    excerpt = await pool(system, "notifier").fetchval(
        "SELECT excerpt FROM notifications WHERE post_id = $1", uuid.UUID(post_id)
    )
    assert excerpt == "Het wordt de dierentuin."
    assert await notified(system, post_id) == messages_before
    assert len(system.smtp.messages) == mails_before, [
        (m.rcpt_tos, m.message["Subject"]) for m in system.smtp.messages[mails_before - 2 :]
    ]
    assert (
        await pool(system).fetchval(
            "SELECT count(*) FROM outbox WHERE routing_key = 'posts.post_published' AND envelope->'payload'->>'post_id' = $1",
            post_id,
        )
        == 1
    )


async def test_a_deleted_post_disappears_from_feed_photos_and_unsent_notifications(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 5")
    status, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, key
    subscription = system.push.subscribe(key["application_server_key"])
    status, device = await system.call(
        "POST", "notifier", "/devices", parent.token, json={"subscription": subscription}
    )
    assert status == 201, device
    # The parent's push service asks to wait an hour: that message stays unsent.
    system.push.throttle_once(subscription, retry_after=3600)
    photo = await upload_photo(system, teacher, png_bytes(64, 48), "image/png", group)
    post = await written(system, teacher, group, photo_ids=[photo["photo_id"]])
    post_id = post["post_id"]

    async def photo_shown() -> bool:
        status, body = await system.call("GET", "media", f"/photos/{photo['photo_id']}", parent.token)
        return status == 200 and body["status"] == "ready"

    await eventually(photo_shown, what="the post's photo shown to the parent")

    async def push_waiting() -> bool:
        row = await pool(system, "notifier").fetchrow(
            """SELECT d.status, d.attempts FROM deliveries d JOIN notifications n USING (notification_id)
               WHERE n.post_id = $1 AND d.channel = 'push'""",
            uuid.UUID(post_id),
        )
        return row is not None and row["status"] == "pending" and row["attempts"] >= 1

    await eventually(push_waiting, what="the push waiting for the push service")

    status, body = await system.call("DELETE", "posts", f"/posts/{post_id}", teacher.token)
    assert status == 204, body
    assert (await read(system, parent, post_id))[0] == 404
    assert post_id not in await feed_ids(system, parent)
    status, body = await system.call(
        "PATCH", "posts", f"/posts/{post_id}", teacher.token, json={"title": "X"}
    )
    assert status == 404, body
    status, body = await system.call("DELETE", "posts", f"/posts/{post_id}", teacher.token)
    assert status == 404, body

    await handled(system, "notifier", "posts.post_deleted", post_id)
    rows = await pool(system, "notifier").fetch(
        """SELECT d.channel, d.status, d.last_error FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE n.post_id = $1""",
        uuid.UUID(post_id),
    )
    push = [r for r in rows if r["channel"] == "push"]
    assert [(r["status"], r["last_error"]) for r in push] == [("failed", "cancelled: the post was deleted")]
    assert not [r for r in rows if r["status"] == "pending"]
    assert system.push.pushes_for(subscription) == []

    await handled(system, "media", "posts.post_deleted", post_id)
    status, body = await system.call("GET", "media", f"/photos/{photo['photo_id']}", parent.token)
    assert status == 404, body
    row = await pool(system, "media").fetchrow(
        "SELECT status, post_id FROM photos WHERE photo_id = $1", uuid.UUID(photo["photo_id"])
    )
    assert row["status"] == "rejected"
    assert row["post_id"] is None


async def two_groups_and_an_admin(system: System) -> tuple[School, Person, Person, Person]:
    school = await make_school(system)
    for name in ("Groep 1", "Groep 2"):
        await add_group(system, school, name)
    teacher = await add_person(system, school, "juf", "teacher", "Groep 1")
    one = await add_person(system, school, "ouder1", "guardian", "Groep 1")
    two = await add_person(system, school, "ouder2", "guardian", "Groep 2")
    for person, name in ((teacher, "Groep 1"), (one, "Groep 1"), (two, "Groep 2")):
        await wait_until_linked(system, person, school.groups[name])
    await admin_known_to_posts(system, school)
    return school, teacher, one, two


async def test_an_announcement_reaches_every_group_and_does_not_use_up_the_days_post(system: System) -> None:
    school, teacher, one, two = await two_groups_and_an_admin(system)
    status, body = await system.call(
        "POST",
        "posts",
        f"/schools/{school.school_id}/announcements",
        school.admin.token,
        json={"title": "Studiedag", "body": "Vrijdag is er geen school.", "urgent": True},
    )
    assert status == 201, body
    posts = {p["group_name"]: p for p in body["posts"]}
    assert sorted(posts) == ["Groep 1", "Groep 2"]
    assert {p["announcement_id"] for p in posts.values()} == {body["announcement_id"]}
    assert all(p["urgent"] and p["status"] == "published" for p in posts.values())
    assert posts["Groep 1"]["post_id"] in await feed_ids(system, one)
    assert posts["Groep 2"]["post_id"] in await feed_ids(system, two)
    assert posts["Groep 1"]["post_id"] not in await feed_ids(system, two)
    for post in posts.values():

        async def told(post_id: str = post["post_id"]) -> bool:
            return await notified(system, post_id) >= 1

        await eventually(told, what="the announcement notified")
    # The teacher's own post that day is still possible; the announcement is the school's, not theirs.
    await written(system, teacher, school.groups["Groep 1"])
    status, body = await system.call(
        "PATCH", "posts", f"/posts/{posts['Groep 1']['post_id']}", teacher.token, json={"title": "Anders"}
    )
    assert status == 403, body
    # To chosen groups only.
    status, body = await system.call(
        "POST",
        "posts",
        f"/schools/{school.school_id}/announcements",
        school.admin.token,
        json={"title": "Luizencontrole", "body": "Maandag.", "group_ids": [str(school.groups["Groep 2"])]},
    )
    assert status == 201, body
    assert [p["group_name"] for p in body["posts"]] == ["Groep 2"]
    # A teacher cannot announce, nor mark a post urgent.
    status, body = await system.call(
        "POST",
        "posts",
        f"/schools/{school.school_id}/announcements",
        teacher.token,
        json={"title": "Hoi", "body": "Allemaal."},
    )
    assert status == 404, body


async def test_who_may_write_edit_and_delete(system: System) -> None:
    school, teacher, one, _two = await two_groups_and_an_admin(system)
    g1, g2 = school.groups["Groep 1"], school.groups["Groep 2"]
    other_school, _g, stranger, _p = await make_class(system, "Groep 8")

    status, body = await write(system, one, g1)
    assert (status, body["error"]["code"]) == (403, "forbidden"), body
    status, body = await write(system, teacher, g2)  # a group the teacher does not teach
    assert (status, body["error"]["code"]) == (404, "not_found"), body
    status, body = await write(system, stranger, g1)
    assert status == 404, body
    status, body = await write(system, teacher, uuid.uuid4())
    assert status == 404, body
    status, body = await write(system, teacher, g1, urgent=True)
    assert status == 403, body
    assert body["error"]["details"] == {"field": "urgent"}
    status, body = await write(system, school.admin, g1)  # admins announce; they do not teach here
    assert status == 403, body

    post = await written(system, teacher, g1)
    post_id = post["post_id"]
    for person, expected in ((one, 403), (stranger, 404)):
        status, body = await system.call(
            "PATCH", "posts", f"/posts/{post_id}", person.token, json={"title": "X"}
        )
        assert status == expected, (person, body)
        status, body = await system.call("DELETE", "posts", f"/posts/{post_id}", person.token)
        assert status == expected, (person, body)
    # The school's admin edits and deletes any post of the school; the other school's admin sees none.
    status, body = await system.call(
        "PATCH", "posts", f"/posts/{post_id}", other_school.admin.token, json={"title": "X"}
    )
    assert status == 404, body
    status, body = await system.call(
        "PATCH", "posts", f"/posts/{post_id}", school.admin.token, json={"title": "Aangepast door directie"}
    )
    assert status == 200, body
    assert body["title"] == "Aangepast door directie"
    assert body["author_id"] == str(teacher.person_id)
    status, body = await system.call("DELETE", "posts", f"/posts/{post_id}", school.admin.token)
    assert status == 204, body


async def counts(system: System, school: School) -> tuple[int, int, int]:
    posts = await pool(system).fetchval("SELECT count(*) FROM posts WHERE school_id = $1", school.school_id)
    days = await pool(system).fetchval(
        "SELECT coalesce(sum(posts), 0) FROM post_days d JOIN groups g USING (group_id) WHERE g.school_id = $1",
        school.school_id,
    )
    events = await pool(system).fetchval(
        "SELECT count(*) FROM outbox WHERE envelope->>'school_id' = $1 AND routing_key LIKE 'posts.%'",
        str(school.school_id),
    )
    return posts, days, events


async def test_bad_input_is_refused_in_the_common_shape_and_nothing_is_written(system: System) -> None:
    school, teacher, _one, _two = await two_groups_and_an_admin(system)
    g1 = school.groups["Groep 1"]
    soon = datetime.now(UTC) + timedelta(hours=1)
    before = await counts(system, school)
    for fields, field in (
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"title": " \n "}, "title"),
        ({"title": "x" * 121}, "title"),
        ({"body": ""}, "body"),
        ({"body": "x" * 5001}, "body"),
        ({"body": 7}, "body"),
        ({"photo_ids": ["niet-een-id"]}, "photo_ids.0"),
        ({"photo_ids": [str(uuid.UUID(int=1))] * 2}, "photo_ids"),
        ({"publish_at": "morgen"}, "publish_at"),
        ({"publish_at": soon.replace(tzinfo=None).isoformat()}, "publish_at"),
        ({"publish_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()}, "publish_at"),
        ({"publish_at": (datetime.now(UTC) + timedelta(hours=21)).isoformat()}, "publish_at"),
        ({"urgent": "ja"}, "urgent"),
        ({"html": "<b>x</b>"}, "html"),
    ):
        status, body = await write(system, teacher, g1, **fields)
        assert status == 422, (fields, status, body)
        assert body["error"]["code"] == "validation_failed", body
        assert [d["field"] for d in body["error"]["details"]] == [field], (fields, body)
    status, body = await system.call(
        "POST", "posts", f"/groups/{g1}/posts", teacher.token, json={"body": "Geen titel"}
    )
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["title"], body

    post = await written(system, teacher, g1)
    after_post = await counts(system, school)
    for patch, field in (
        ({"title": None}, "title"),
        ({"body": "  "}, "body"),
        ({"photo_ids": None}, "photo_ids"),
        ({"photo_ids": ["x"]}, "photo_ids.0"),
        ({"publish_at": soon.isoformat()}, "publish_at"),
    ):
        status, body = await system.call(
            "PATCH", "posts", f"/posts/{post['post_id']}", teacher.token, json=patch
        )
        assert status == 422, (patch, status, body)
        assert [d["field"] for d in body["error"]["details"]] == [field], (patch, body)
    for path_id in ("nope", "1"):
        status, body = await system.call(
            "PATCH", "posts", f"/posts/{path_id}", teacher.token, json={"title": "x"}
        )
        assert status in (400, 404, 422), body
        assert "error" in body, body

    announce = f"/schools/{school.school_id}/announcements"
    announcements: tuple[tuple[dict[str, Any], str], ...] = (
        ({"group_ids": []}, "group_ids"),
        ({"group_ids": [str(uuid.uuid4())]}, "group_ids"),
        ({"group_ids": [str(g1), str(g1)]}, "group_ids"),
        ({"photo_ids": [str(uuid.uuid4())]}, "photo_ids"),
    )
    for fields, field in announcements:
        status, body = await system.call(
            "POST", "posts", announce, school.admin.token, json={"title": "Hoi", "body": "Allen.", **fields}
        )
        assert status == 422, (fields, status, body)
        assert [d["field"] for d in body["error"]["details"]] == [field], (fields, body)
    assert await counts(system, school) == after_post
    assert after_post[0] == before[0] + 1


async def test_an_edit_can_change_the_photos_of_a_post(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 6")
    first = await upload_photo(system, teacher, png_bytes(40, 30), "image/png", group)
    second = await upload_photo(system, teacher, png_bytes(50, 30), "image/png", group)
    post = await written(system, teacher, group, photo_ids=[first["photo_id"]])
    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{post['post_id']}", teacher.token, json={"photo_ids": [second["photo_id"]]}
    )
    assert status == 200, edited
    assert [p["photo_id"] for p in edited["photos"]] == [second["photo_id"]]

    async def swapped() -> bool:
        shown = await system.call("GET", "media", f"/photos/{second['photo_id']}", parent.token)
        gone = await system.call("GET", "media", f"/photos/{first['photo_id']}", parent.token)
        return shown[0] == 200 and gone[0] == 404

    await eventually(swapped, what="media showing the new photo and not the removed one")
