"""A post carries only photos it may show (issue 9), across identity, media, posts and the notifier:

- case 8: a post naming a photo that is unknown, of another group or school, of another teacher,
  already in another post, or rejected is refused when it is written (422 naming each photo_ids[i]),
  before anything is published or anyone notified; an editor adds only photos they uploaded;
- case 4: a bad photo is refused at upload with a reason a teacher understands, so a post never
  carries it; a photo rejected later in processing cannot be posted, and nobody is told of a post that
  was refused.
"""

import asyncio
import uuid
from typing import Any

from media.resources import PIPELINE
from shared.app import POOL
from shared.testing.images import jpeg_with_gps, png_bytes
from shared.testing.infra import s3_client
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    mail_text,
    make_school,
    teach,
    upload_photo,
    wait_until_linked,
)
from tests.harness.system import System, eventually


async def post(
    system: System, teacher: Person, group: uuid.UUID, *photo_ids: str, body: str = "Kijk!"
) -> tuple[int, Any]:
    return await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": body, "photo_ids": list(photo_ids)},
    )


async def in_copy(system: System, *photo_ids: str, status: str | None = None) -> None:
    """Until posts' copy holds the photos (with ``status``, if given)."""

    async def copied() -> bool:
        rows = (
            await system.services["posts"]
            .app[POOL]
            .fetch(
                "SELECT status FROM photo_copies WHERE photo_id = ANY($1::uuid[])",
                [uuid.UUID(p) for p in photo_ids],
            )
        )
        return len(rows) == len(photo_ids) and (status is None or all(r["status"] == status for r in rows))

    await eventually(copied, what="posts' copy of the photos")


def problems(answer: Any) -> dict[str, str]:
    return {d["field"]: d["problem"] for d in answer["error"]["details"]}


async def nothing_published(system: System, group: uuid.UUID, parent: Person) -> None:
    """No post of the group, no PostPublished, no mail about a post to its parent."""
    pool = system.services["posts"].app[POOL]
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE group_id = $1", group) == 0
    published = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'posts.post_published' AND envelope->'payload'->>'group_id' = $1",
        str(group),
    )
    assert published == 0
    await asyncio.sleep(0.5)
    mails = [m for m in system.smtp.messages if parent.email in m.rcpt_tos and "Nieuws" in mail_text(m)]
    assert mails == []


async def two_groups(system: System) -> tuple[School, Person, Person, Person, Person]:
    """Groep 1 with teachers A and C and a parent, Groep 2 with teacher B."""
    school = await make_school(system)
    for name in ("Groep 1", "Groep 2"):
        await add_group(system, school, name)
    teacher_a = await add_person(system, school, "juf", "teacher", "Groep 1")
    teacher_b = await add_person(system, school, "meester", "teacher", "Groep 2")
    teacher_c = await add_person(system, school, "collega", "teacher", "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    for person, group in (
        (teacher_a, "Groep 1"),
        (teacher_b, "Groep 2"),
        (teacher_c, "Groep 1"),
        (parent, "Groep 1"),
    ):
        await wait_until_linked(system, person, school.groups[group])
    return school, teacher_a, teacher_b, teacher_c, parent


async def test_case_8_a_post_naming_photos_it_may_not_carry_is_refused_naming_each(system: System) -> None:
    school, teacher_a, teacher_b, teacher_c, parent = await two_groups(system)
    group_1, group_2 = school.groups["Groep 1"], school.groups["Groep 2"]
    await teach(system, school, teacher_a, "Groep 2")
    await wait_until_linked(system, teacher_a, group_2)
    elsewhere = await make_school(system, "De Vrije School")
    await add_group(system, elsewhere, "Groep 1")
    stranger = await add_person(system, elsewhere, "juf", "teacher", "Groep 1")
    await wait_until_linked(system, stranger, elsewhere.groups["Groep 1"])

    photo = jpeg_with_gps(320, 240)
    own = (await upload_photo(system, teacher_a, photo, "image/jpeg", group_1))["photo_id"]
    used = (await upload_photo(system, teacher_a, photo, "image/jpeg", group_2))["photo_id"]
    for_group_2 = (await upload_photo(system, teacher_a, photo, "image/jpeg", group_2))["photo_id"]
    colleagues = (await upload_photo(system, teacher_c, photo, "image/jpeg", group_1))["photo_id"]
    other_teachers = (await upload_photo(system, teacher_b, photo, "image/jpeg", group_2))["photo_id"]
    other_schools = (await upload_photo(system, stranger, photo, "image/jpeg"))["photo_id"]
    await in_copy(system, own, used, for_group_2, colleagues, other_teachers, other_schools)
    status, first = await post(system, teacher_a, group_2, used)
    assert status == 201, first

    unknown = str(uuid.uuid4())
    status, refused = await post(
        system, teacher_a, group_1, own, unknown, used, for_group_2, colleagues, other_teachers, other_schools
    )
    assert status == 422, refused
    assert refused["error"]["code"] == "validation_failed"
    assert refused["error"]["message"] == "6 photos cannot be put in this post; nothing was published"
    said = problems(refused)
    assert set(said) == {f"photo_ids[{i}]" for i in range(1, 7)}, said
    assert said["photo_ids[1]"].startswith("no such photo")
    assert said["photo_ids[2]"].startswith("uploaded for another group")  # in a post of Groep 2
    assert said["photo_ids[3]"].startswith("uploaded for another group")
    assert said["photo_ids[4]"].startswith("uploaded by someone else")
    assert said["photo_ids[5]"].startswith("uploaded for another group")
    assert said["photo_ids[6]"].startswith("uploaded for another group")
    await nothing_published(system, group_1, parent)

    # Already in another post of the same group: teacher A's own photo, posted once.
    status, posted = await post(system, teacher_a, group_1, own)
    assert status == 201, posted
    await system.services["posts"].app[POOL].execute("DELETE FROM post_days WHERE group_id = $1", group_1)
    status, again = await post(system, teacher_a, group_1, own, body="Nog eens")
    assert status == 422, again
    assert problems(again) == {"photo_ids[0]": "already in another post: a photo is posted once"}

    # An editor adds only photos they uploaded; the photos the post carries stay whoever edits it.
    status, edited = await system.call(
        "PATCH",
        "posts",
        f"/posts/{posted['post_id']}",
        teacher_c.token,
        json={"photo_ids": [own, colleagues]},
    )
    assert status == 200, edited
    assert [p["photo_id"] for p in edited["photos"]] == [own, colleagues]
    extra = (await upload_photo(system, teacher_a, photo, "image/jpeg", group_1))["photo_id"]
    await in_copy(system, extra)
    status, refused = await system.call(
        "PATCH",
        "posts",
        f"/posts/{posted['post_id']}",
        teacher_c.token,
        json={"photo_ids": [own, colleagues, extra]},
    )
    assert status == 422, refused
    assert list(problems(refused)) == ["photo_ids[2]"]
    assert problems(refused)["photo_ids[2]"].startswith("uploaded by someone else")


async def test_a_photo_uploaded_a_moment_ago_can_be_posted_at_once(system: System) -> None:
    school, teacher_a, _teacher_b, _teacher_c, parent = await two_groups(system)
    group_1 = school.groups["Groep 1"]
    # Straight after its 201, before posts' copy may have heard of it: posts waits for the copy.
    photo_id = (await upload_photo(system, teacher_a, png_bytes(64, 48), "image/png", group_1))["photo_id"]
    status, posted = await post(system, teacher_a, group_1, photo_id)
    assert status == 201, posted

    async def ready_for_the_parent() -> bool:
        status, view = await system.call("GET", "media", f"/photos/{photo_id}", parent.token)
        return status == 200 and view["status"] == "ready"

    await eventually(ready_for_the_parent, within=60, what="the photo ready for the parent")


async def test_case_4_a_bad_photo_is_refused_at_upload_and_a_rejected_one_is_never_posted(
    system: System,
) -> None:
    school, teacher_a, _teacher_b, _teacher_c, parent = await two_groups(system)
    group_1 = school.groups["Groep 1"]
    good = jpeg_with_gps(1600, 1200, textured=True)

    # Damaged at the door: the teacher learns it at once, in words, and nothing is stored.
    status, refused = await system.call(
        "POST",
        "media",
        f"/groups/{group_1}/photos",
        teacher_a.token,
        data=good[: len(good) // 2],
        headers={"Content-Type": "image/jpeg"},
    )
    assert status == 422, refused
    assert refused["error"]["message"].startswith("the photo cannot be used: ")
    assert "damaged or incomplete" in refused["error"]["message"]

    def listed() -> list[str]:
        s3 = s3_client()
        return [
            item["Key"]
            for bucket in system.buckets[:2]
            for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{school.school_id}/").get("Contents", [])
        ]

    assert await asyncio.to_thread(listed) == []

    # Damaged in storage after it was accepted (a failing disk, say): processing rejects it, and posts
    # then refuses it, saying why; nobody is told of anything.
    pipeline = system.services["media"].app[PIPELINE]
    await pipeline.stop()
    try:
        photo_id = (await upload_photo(system, teacher_a, png_bytes(200, 100), "image/png", group_1))[
            "photo_id"
        ]
        await asyncio.to_thread(
            s3_client().put_object,
            Bucket=system.buckets[0],
            Key=f"{school.school_id}/{photo_id}",
            Body=png_bytes(200, 100)[:64] + bytes(200),
        )
    finally:
        await pipeline.start()
    await in_copy(system, photo_id, status="rejected")
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher_a.token)
    assert (status, view["status"]) == (200, "rejected")

    status, refused = await post(system, teacher_a, group_1, photo_id)
    assert status == 422, refused
    [(field, problem)] = problems(refused).items()
    assert field == "photo_ids[0]"
    assert problem == f"cannot be shown: {view['reason']}"
    await nothing_published(system, group_1, parent)
