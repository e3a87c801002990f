"""The walking skeleton end to end: a teacher posts a photo with GPS in its EXIF to a group; every
parent of that group is told once by email and once by Web Push, sees the post and a cleaned photo;
a parent of another group sees and hears nothing."""

import asyncio
import uuid
from typing import Any

import aiohttp

from shared.app import POOL
from shared.testing.images import jpeg_with_gps, metadata_report
from tests.harness.school import (
    add_group,
    add_person,
    choose,
    make_school,
    register_push,
    upload_photo,
    wait_until_linked,
)
from tests.harness.system import System, eventually


async def test_a_post_with_a_photo_reaches_each_parent_of_the_group_once_and_no_one_else(
    system: System,
) -> None:
    school = await make_school(system)
    group = await add_group(system, school, "Groep 3B")
    other = await add_group(system, school, "Groep 5A")
    teacher = await add_person(system, school, "juf", "teacher", "Groep 3B")
    parents = [await add_person(system, school, f"ouder{i}", "guardian", "Groep 3B") for i in range(3)]
    outsider = await add_person(system, school, "buiten", "guardian", "Groep 5A")
    subscriptions = {p.person_id: await register_push(system, p) for p in [*parents, outsider]}
    for person in [*parents, outsider]:
        await choose(system, person, "both")  # with a device the default is push only
    for person in [teacher, *parents]:
        await wait_until_linked(system, person, group)
    await wait_until_linked(system, outsider, other)

    photo = jpeg_with_gps(1600, 1200, orientation=6)
    assert metadata_report(photo)["gps"]
    photo_id = (await upload_photo(system, teacher, photo, "image/jpeg"))["photo_id"]

    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={
            "title": "Nieuws",
            "body": "Vandaag hebben we de kinderboerderij bezocht!",
            "photo_ids": [photo_id],
        },
    )
    assert status == 201, post
    post_id = post["post_id"]

    mails_before = len(system.smtp.messages)
    parent_emails = {p.email for p in parents}

    def mails_to(addresses: set[str]) -> list[Any]:
        return [m for m in system.smtp.messages[mails_before:] if set(m.rcpt_tos) & addresses]

    async def everyone_told() -> bool:
        pushed = all(system.push.pushes_for(subscriptions[p.person_id]) for p in parents)
        return len(mails_to(parent_emails)) >= 3 and pushed

    await eventually(everyone_told, what="an email and a push to every parent")

    async def photo_ready() -> bool:
        status, body = await system.call("GET", "media", f"/photos/{photo_id}", parents[0].token)
        return status == 200 and body["status"] == "ready"

    await eventually(photo_ready, within=60, what="the photo processed")
    await asyncio.sleep(1.5)  # room for any duplicate to arrive

    # Exactly one email and one push per parent, naming the group.
    for parent in parents:
        [mail] = mails_to({parent.email})
        assert "Groep 3B" in mail.message["Subject"]
        [push] = system.push.pushes_for(subscriptions[parent.person_id])
        assert "Groep 3B" in push.json()["title"]
        assert post_id in push.json()["url"]
    # The outsider: nothing at all.
    assert not mails_to({outsider.email})
    assert not system.push.pushes_for(subscriptions[outsider.person_id])
    assert len(system.smtp.messages) - mails_before == 3

    # Parents of the group read the post in their feed; the outsider gets 404 for post and photo.
    status, feed = await system.call("GET", "posts", "/feed", parents[1].token)
    assert status == 200
    assert [p["post_id"] for p in feed["posts"]] == [post_id]
    assert feed["posts"][0]["photos"] == [{"photo_id": photo_id, "status": "ready"}]
    status, body = await system.call("GET", "posts", f"/posts/{post_id}", outsider.token)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await system.call("GET", "media", f"/photos/{photo_id}", outsider.token)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await system.call("GET", "posts", "/feed", outsider.token)
    assert body["posts"] == []

    # The variant served has no metadata left and is turned upright (orientation 6: 1600x1200 → 1200x1600).
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", parents[2].token)
    assert status == 200
    assert "derden" in view["notice"] or "anderen" in view["notice"]
    assert {v["size"] for v in view["variants"]} == {2048, 1080, 320}
    largest = max(view["variants"], key=lambda v: v["size"])
    assert (largest["width"], largest["height"]) == (1200, 1600)
    async with aiohttp.ClientSession() as http:
        for variant in view["variants"]:
            async with http.get(variant["url"]) as response:
                assert response.status == 200
                data = await response.read()
            report = metadata_report(data)
            assert not any(report[k] for k in ("exif", "gps", "xmp", "iptc", "comment")), report
    # Originals are never reachable: the link is only ever to the variants bucket.
    assert all(system.buckets[1] in v["url"] and system.buckets[0] not in v["url"] for v in view["variants"])


async def test_a_parent_cannot_post_and_a_teacher_cannot_post_to_another_group(system: System) -> None:
    school = await make_school(system)
    group = await add_group(system, school, "Groep 1")
    other = await add_group(system, school, "Groep 2")
    teacher = await add_person(system, school, "meester", "teacher", "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    await wait_until_linked(system, teacher, group)
    await wait_until_linked(system, parent, group)
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/posts", parent.token, json={"title": "Nieuws", "body": "hoi"}
    )
    assert status == 403, body
    status, body = await system.call(
        "POST", "posts", f"/groups/{other}/posts", teacher.token, json={"title": "Nieuws", "body": "hoi"}
    )
    assert status == 404, body
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{uuid.uuid4()}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "hoi"},
    )
    assert status == 404, body
    assert (
        await system.services["posts"]
        .app[POOL]
        .fetchval("SELECT count(*) FROM posts WHERE group_id = ANY($1)", [group, other])
        == 0
    )


async def test_metrics_show_the_outbox_backlog_and_handled_events(system: System) -> None:
    school = await make_school(system)
    group = await add_group(system, school, "Groep 8")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 8")
    await wait_until_linked(system, parent, group)
    status, text = await system.call("GET", "notifier", "/metrics")
    assert status == 200
    lines = text.decode().splitlines()
    assert any(line.startswith('klaspost_outbox_unsent{service="notifier"}') for line in lines)
    handled = [
        line
        for line in lines
        if line.startswith('klaspost_events_total{service="notifier",outcome="handled"}')
    ]
    assert handled
    assert int(handled[0].rsplit(" ", 1)[1]) >= 3  # at least the person, the group and the link
