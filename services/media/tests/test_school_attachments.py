"""A school admin's attachment (the school's newsletter) in an announcement to several groups, through the
running system against the real S3 (the bucket looked at with boto3, not through the API): one stored file
for every post of the announcement, served to the parents of each group it went to and to no one else;
edits and deletes of one group's post leave it to the others, the last one deletes it from storage. Only
the school's admins upload for the school; what an announcement may not name is a 422 naming
``attachment_ids[i]``. Also: a send-later post's attachment is not an unused upload for the clean-up."""

import asyncio
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from media.cleanup import clean_up
from media.resources import STORAGE
from media.settings import Settings
from shared.app import POOL, SETTINGS
from shared.testing import pdfs
from shared.testing.infra import s3_client
from tests.harness.school import Person, School, add_group, add_person, make_school, wait_until_linked
from tests.harness.system import System, eventually

ATTACHMENTS_BUCKET = 1  # media keeps attachments beside the photos' variants
GROUPS = ("Groep 1", "Groep 2", "Groep 3", "Groep 4")


@dataclass
class Setup:
    school: School
    groups: list[uuid.UUID]
    parents: list[Person]  # one per group
    teacher: Person  # teaches Groep 1, not an admin


@pytest.fixture(scope="module")
async def setup(system: System) -> Setup:
    school = await make_school(system)
    groups = [await add_group(system, school, name) for name in GROUPS]
    teacher = await add_person(system, school, "juf", "teacher", GROUPS[0])
    parents = [
        await add_person(system, school, f"ouder{i}", "guardian", name) for i, name in enumerate(GROUPS)
    ]
    await wait_until_linked(system, teacher, groups[0])
    for parent, group in zip(parents, groups, strict=True):
        await wait_until_linked(system, parent, group)

    async def media_knows_the_admin() -> bool:
        found = await db(system, "media").fetchval(
            "SELECT 1 FROM staff WHERE school_id = $1 AND person_id = $2 AND 'admin' = ANY(roles)",
            school.school_id,
            school.admin.person_id,
        )
        return found is not None

    await eventually(media_knows_the_admin, what="media's staff copy")
    return Setup(school, groups, parents, teacher)


def db(system: System, service: str) -> Any:
    return system.services[service].app[POOL]


async def keys(system: System, school_id: uuid.UUID) -> list[str]:
    """The keys of the school's objects in the attachments' bucket, listed with boto3."""

    def listing() -> list[str]:
        found = s3_client().list_objects_v2(Bucket=system.buckets[ATTACHMENTS_BUCKET], Prefix=f"{school_id}/")
        return sorted(item["Key"] for item in found.get("Contents", []))

    return await asyncio.to_thread(listing)


async def object_bytes(system: System, key: str) -> bytes:
    def read() -> bytes:
        got = s3_client().get_object(Bucket=system.buckets[ATTACHMENTS_BUCKET], Key=key)
        data: bytes = got["Body"].read()
        return data

    return await asyncio.to_thread(read)


async def upload(system: System, path: str, person: Person, data: bytes) -> tuple[int, Any]:
    assert system.http is not None
    async with system.http.post(
        system.url("media", path),
        params={"filename": "Nieuwsbrief school.pdf"},
        data=io.BytesIO(data),
        headers={"Authorization": f"Bearer {person.token}", "Content-Type": "application/pdf"},
    ) as response:
        return response.status, await response.json()


async def school_upload(system: System, setup: Setup, data: bytes) -> str:
    status, body = await upload(
        system, f"/schools/{setup.school.school_id}/attachments", setup.school.admin, data
    )
    assert status == 201, body
    return str(body["attachment_id"])


async def link(system: System, person: Person, attachment_id: str) -> tuple[int, Any]:
    return await system.call("GET", "media", f"/attachments/{attachment_id}", person.token)


async def download(system: System, url: str) -> bytes:
    assert system.http is not None
    async with system.http.get(url) as response:
        assert response.status == 200
        return await response.read()


async def codes(system: System, people: list[Person], attachment_id: str) -> list[int]:
    return [(await link(system, p, attachment_id))[0] for p in people]


async def announce(
    system: System, setup: Setup, group_ids: list[uuid.UUID], **fields: Any
) -> tuple[int, Any]:
    return await system.call(
        "POST",
        "posts",
        f"/schools/{setup.school.school_id}/announcements",
        setup.school.admin.token,
        json={
            "title": "Nieuwsbrief",
            "body": "De nieuwsbrief van de school.",
            "group_ids": [str(g) for g in group_ids],
            **fields,
        },
    )


async def test_an_announcements_attachment_is_one_file_for_all_its_groups_until_its_last_post_goes(
    system: System, setup: Setup
) -> None:
    newsletter = pdfs.newsletter(b"Nieuwsbrief van de school")
    attachment_id = await school_upload(system, setup, newsletter)
    key = f"{setup.school.school_id}/attachments/{attachment_id}.pdf"
    assert await keys(system, setup.school.school_id) == [key]

    status, announcement = await announce(system, setup, setup.groups[:3], attachment_ids=[attachment_id])

    assert status == 201, announcement
    posts = {uuid.UUID(p["group_id"]): p for p in announcement["posts"]}
    assert set(posts) == set(setup.groups[:3])
    shown = {
        "attachment_id": attachment_id,
        "filename": "Nieuwsbrief school.pdf",
        "content_type": "application/pdf",
        "size_bytes": len(newsletter),
    }
    assert [p["attachments"] for p in posts.values()] == [[shown]] * 3
    in_three, fourth = setup.parents[:3], setup.parents[3]

    async def served_to_the_three() -> bool:
        return await codes(system, in_three, attachment_id) == [200] * 3

    await eventually(served_to_the_three, what="the attachment served to the three groups")
    for parent in in_three:
        status, view = await link(system, parent, attachment_id)
        assert await download(system, view["url"]) == newsletter
    assert (await link(system, fourth, attachment_id))[0] == 404
    # The feed of each group lists it.
    status, feed = await system.call("GET", "posts", "/feed", in_three[1].token)
    assert status == 200, feed
    assert [p["attachments"] for p in feed["posts"]] == [[shown]]
    # One stored object for the three posts.
    assert await keys(system, setup.school.school_id) == [key]

    # An edit of one group's post follows: its parents lose the file, the others keep it; put back, it is theirs again.
    first, second, third = (posts[g]["post_id"] for g in setup.groups[:3])
    token = setup.school.admin.token
    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{first}", token, json={"attachment_ids": []}
    )
    assert status == 200, edited
    assert edited["attachments"] == []

    async def first_group_left_out() -> bool:
        return await codes(system, in_three, attachment_id) == [404, 200, 200]

    await eventually(first_group_left_out, what="the edited post's group no longer served")
    assert await keys(system, setup.school.school_id) == [key]
    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{first}", token, json={"attachment_ids": [attachment_id]}
    )
    assert status == 200, edited
    assert edited["attachments"] == [shown]
    await eventually(served_to_the_three, what="the attachment put back in the first group's post")

    # Two of the three posts deleted: the third group keeps the file, the object stays.
    for post_id in (first, second):
        status, _ = await system.call("DELETE", "posts", f"/posts/{post_id}", token)
        assert status == 204

    async def only_the_third() -> bool:
        return await codes(system, in_three, attachment_id) == [404, 404, 200]

    await eventually(only_the_third, what="the deleted posts' groups no longer served")
    await asyncio.sleep(1)  # the removal drainer would have run by now, had it been told to
    assert await keys(system, setup.school.school_id) == [key]
    assert await object_bytes(system, key) == newsletter

    # The last post deleted: the object goes from storage, the rows from media and posts.
    status, _ = await system.call("DELETE", "posts", f"/posts/{third}", token)
    assert status == 204

    async def gone() -> bool:
        rows = await db(system, "media").fetchval(
            "SELECT count(*) FROM attachments WHERE attachment_id = $1", uuid.UUID(attachment_id)
        )
        return rows == 0 and await keys(system, setup.school.school_id) == []

    await eventually(gone, what="the last post's attachment deleted from storage, then its row")
    assert await codes(system, [*in_three, fourth], attachment_id) == [404] * 4
    copy = await db(system, "posts").fetchval(
        "SELECT count(*) FROM attachments WHERE attachment_id = $1", uuid.UUID(attachment_id)
    )
    assert copy == 0


async def test_only_the_schools_admins_upload_for_the_school(system: System, setup: Setup) -> None:
    path = f"/schools/{setup.school.school_id}/attachments"
    before = await keys(system, setup.school.school_id)
    for person in (setup.teacher, setup.parents[0]):
        status, body = await upload(system, path, person, pdfs.newsletter())
        assert status == 404, body
        assert body["error"]["code"] == "not_found"
    # Another school's admin neither.
    other = await make_school(system, "De Regenboog")
    status, body = await upload(system, path, other.admin, pdfs.newsletter())
    assert status == 404, body
    # What is not a plain PDF is refused at this door as at the group's.
    status, body = await upload(system, path, setup.school.admin, pdfs.with_javascript())
    assert status == 422, body
    assert await keys(system, setup.school.school_id) == before


async def test_what_an_announcement_may_not_name_is_refused_naming_each(system: System, setup: Setup) -> None:
    school_file = await school_upload(system, setup, pdfs.newsletter(b"School"))
    status, body = await upload(
        system, f"/groups/{setup.groups[0]}/attachments", setup.teacher, pdfs.newsletter()
    )
    assert status == 201, body
    group_file = body["attachment_id"]
    other = await make_school(system, "De Boomgaard")
    await add_group(system, other, "Groep 8")

    async def media_knows_the_other_admin() -> bool:
        found = await db(system, "media").fetchval(
            "SELECT 1 FROM staff WHERE person_id = $1", other.admin.person_id
        )
        return found is not None

    await eventually(media_knows_the_other_admin, what="media's staff copy of the other school")
    status, body = await upload(
        system, f"/schools/{other.school_id}/attachments", other.admin, pdfs.newsletter()
    )
    assert status == 201, body
    other_schools = body["attachment_id"]

    status, body = await announce(
        system,
        setup,
        setup.groups[:2],
        attachment_ids=[school_file, group_file, other_schools, str(uuid.uuid4())],
    )

    assert status == 422, body
    problems = {d["field"]: d["problem"] for d in body["error"]["details"]}
    assert set(problems) == {"attachment_ids[1]", "attachment_ids[2]", "attachment_ids[3]"}
    assert problems["attachment_ids[2]"] == problems["attachment_ids[3]"]  # another school's: as unknown
    # Not an id at all: refused by the shape.
    status, body = await announce(system, setup, setup.groups[:2], attachment_ids=["nieuwsbrief.pdf"])
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["attachment_ids.0"]
    # A school's attachment does not go in a teacher's post to one group.
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{setup.groups[0]}/posts",
        setup.teacher.token,
        json={"title": "Nieuws", "body": "Bijlage", "attachment_ids": [school_file]},
    )
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["attachment_ids[0]"]
    # Nothing half-written: the school's attachment is still free for one announcement, and then for no other.
    status, body = await announce(system, setup, setup.groups[2:], attachment_ids=[school_file])
    assert status == 201, body
    status, body = await announce(system, setup, setup.groups[:1], attachment_ids=[school_file])
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "attachment_ids[0]", "problem": "already in another announcement"}
    ]


async def test_a_send_later_posts_attachment_outlives_the_clean_up_of_unused_uploads(
    system: System, setup: Setup
) -> None:
    status, body = await upload(
        system, f"/groups/{setup.groups[0]}/attachments", setup.teacher, pdfs.newsletter()
    )
    assert status == 201, body
    attachment_id = body["attachment_id"]
    key = f"{setup.school.school_id}/attachments/{attachment_id}.pdf"
    at = (datetime.now(UTC) + timedelta(hours=19)).replace(microsecond=0)
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{setup.groups[0]}/posts",
        setup.teacher.token,
        json={
            "title": "Morgen",
            "body": "Nieuwsbrief",
            "attachment_ids": [attachment_id],
            "publish_at": at.isoformat(),
        },
    )
    assert status == 201, post
    media = db(system, "media")

    async def reserved() -> bool:
        found: str | None = await media.fetchval(
            "SELECT status FROM attachments WHERE attachment_id = $1", uuid.UUID(attachment_id)
        )
        return found == "reserved"

    await eventually(reserved, what="media told of the send-later post")
    # Uploaded more than a day ago (the evening before, and the post appears the next afternoon).
    await media.execute(
        "UPDATE attachments SET created_at = now() - interval '25 hours' WHERE attachment_id = $1",
        uuid.UUID(attachment_id),
    )
    settings = system.services["media"].app[SETTINGS]
    assert isinstance(settings, Settings)
    async with media.acquire() as conn, conn.transaction():
        await clean_up(conn, system.services["media"].app[STORAGE], settings)

    assert key in await keys(system, setup.school.school_id)
    assert (await link(system, setup.parents[0], attachment_id))[0] == 404  # not before the post appears
    await db(system, "posts").execute(
        "UPDATE posts SET publish_at = now() WHERE post_id = $1", uuid.UUID(post["post_id"])
    )

    async def parent_gets_it() -> bool:
        return (await link(system, setup.parents[0], attachment_id))[0] == 200

    await eventually(parent_gets_it, within=60, what="the attachment served once the post appeared")
