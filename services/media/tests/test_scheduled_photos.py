"""A send-later post's photos through the running system, against the real S3 (the variants' bucket listed
with boto3, not through the API): media processes a photo at upload and deletes uploads no post used
within a day, but attaches a post's photos only when it appears. A photo uploaded the evening before,
named by a post that appears the next afternoon, is reserved (posts.scheduled_photos_changed) and
outlives the clean-up; no other post may take it meanwhile; it reaches the parents when the post appears.
Deleting the send-later post lets its photos go: free for another post, and deleted by the clean-up a day
after that. A word of posts handled late (an older revision) changes nothing (issue 9 / issue 6)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from media import reservations
from media.cleanup import clean_up
from media.resources import STORAGE
from media.settings import Settings
from shared.app import POOL, SETTINGS
from shared.contracts import ScheduledPhotosChanged
from shared.testing.images import jpeg_with_gps
from shared.testing.infra import s3_client
from tests.harness.feed import allow_posts_per_day
from tests.harness.school import Person, School, make_class, upload_photo
from tests.harness.system import System, eventually

VARIANTS_BUCKET = 1


def db(system: System, service: str) -> Any:
    return system.services[service].app[POOL]


async def variant_keys(system: System, school_id: uuid.UUID, photo_id: str) -> list[str]:
    """The photo's variants in the variants' bucket, listed with boto3."""

    def listing() -> list[str]:
        found = s3_client().list_objects_v2(Bucket=system.buckets[VARIANTS_BUCKET], Prefix=f"{school_id}/")
        return sorted(item["Key"] for item in found.get("Contents", []) if photo_id in item["Key"])

    return await asyncio.to_thread(listing)


async def class_of(system: System, name: str) -> tuple[School, uuid.UUID, Person, Person]:
    """A new school with one group (several posts a day: the send-later post's day may be today), its
    teacher and a parent."""
    school, group, teacher, parent = await make_class(system, name)
    await allow_posts_per_day(system, school)
    return school, group, teacher, parent


async def photo_row(system: System, photo_id: str) -> Any:
    return await db(system, "media").fetchrow(
        "SELECT status, post_id, reserved, released_at FROM photos WHERE photo_id = $1", uuid.UUID(photo_id)
    )


async def ready_photo(system: System, teacher: Person) -> str:
    """An upload of the teacher's, once processed (its variants in S3)."""
    photo_id = str((await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg"))["photo_id"])

    async def ready() -> bool:
        row = await photo_row(system, photo_id)
        return row is not None and row["status"] == "ready"

    await eventually(ready, within=60, what="the photo processed")
    return photo_id


async def post(
    system: System,
    teacher: Person,
    group: uuid.UUID,
    photo_ids: list[str],
    publish_at: datetime | None = None,
) -> tuple[int, Any]:
    body: dict[str, Any] = {"title": "Morgen", "body": "De foto's van vandaag", "photo_ids": photo_ids}
    if publish_at is not None:
        body["publish_at"] = publish_at.isoformat()
    return await system.call("POST", "posts", f"/groups/{group}/posts", teacher.token, json=body)


async def reserved_as(system: System, photo_id: str, reserved: bool) -> None:
    async def told() -> bool:
        row = await photo_row(system, photo_id)
        return row is not None and row["reserved"] is reserved

    await eventually(told, what=f"media told the photo is {'reserved' if reserved else 'let go'}")


async def age(system: System, photo_id: str, column: str = "created_at") -> None:
    """As if ``column`` (created_at, released_at) were 25 hours ago."""
    await db(system, "media").execute(
        f"UPDATE photos SET {column} = now() - interval '25 hours' WHERE photo_id = $1",  # noqa: S608 - ours
        uuid.UUID(photo_id),
    )


async def clean(system: System) -> None:
    """One round of media's clean-up job, as the job runs it."""
    settings = system.services["media"].app[SETTINGS]
    assert isinstance(settings, Settings)
    async with db(system, "media").acquire() as conn, conn.transaction():
        await clean_up(conn, system.services["media"].app[STORAGE], settings)


async def sees(system: System, person: Person, photo_id: str) -> int:
    status, _ = await system.call("GET", "media", f"/photos/{photo_id}", person.token)
    return status


def later() -> datetime:
    return (datetime.now(UTC) + timedelta(hours=19)).replace(microsecond=0)


async def test_a_send_later_posts_photo_outlives_the_clean_up_and_reaches_the_parents(system: System) -> None:
    school, group, teacher, parent = await class_of(system, "Groep 5")
    photo_id = await ready_photo(system, teacher)
    keys = await variant_keys(system, school.school_id, photo_id)
    assert len(keys) == 3

    status, scheduled = await post(system, teacher, group, [photo_id], later())

    assert status == 201, scheduled
    await reserved_as(system, photo_id, True)
    # Uploaded the evening before; the post appears the next afternoon.
    await age(system, photo_id)
    await clean(system)
    row = await photo_row(system, photo_id)
    assert row is not None
    assert row["status"] == "ready"
    assert row["post_id"] is None
    assert await variant_keys(system, school.school_id, photo_id) == keys
    assert await sees(system, parent, photo_id) == 404  # not before the post appears
    # Not free for another post while the send-later post names it.
    status, second = await post(system, teacher, group, [photo_id])
    assert status == 422, second
    assert second["error"]["details"] == [
        {"field": "photo_ids[0]", "problem": "already in another post: a photo is posted once"}
    ]

    await db(system, "posts").execute(
        "UPDATE posts SET publish_at = now() WHERE post_id = $1", uuid.UUID(scheduled["post_id"])
    )

    async def parent_sees_it() -> bool:
        code, read = await system.call("GET", "posts", f"/posts/{scheduled['post_id']}", parent.token)
        shown = code == 200 and read["photos"] == [{"photo_id": photo_id, "status": "ready"}]
        return shown and await sees(system, parent, photo_id) == 200

    await eventually(parent_sees_it, within=60, what="the photo shown once the post appeared")
    row = await photo_row(system, photo_id)
    assert row["post_id"] == uuid.UUID(scheduled["post_id"])
    assert row["reserved"] is False
    await clean(system)
    assert await variant_keys(system, school.school_id, photo_id) == keys


async def test_deleting_a_send_later_post_lets_its_photos_go(system: System) -> None:
    school, group, teacher, parent = await class_of(system, "Groep 6")
    kept, dropped = await ready_photo(system, teacher), await ready_photo(system, teacher)
    status, scheduled = await post(system, teacher, group, [kept, dropped], later())
    assert status == 201, scheduled
    await reserved_as(system, kept, True)
    await reserved_as(system, dropped, True)
    for photo_id in (kept, dropped):
        await age(system, photo_id)

    status, _ = await system.call("DELETE", "posts", f"/posts/{scheduled['post_id']}", teacher.token)

    assert status == 204
    await reserved_as(system, kept, False)
    await reserved_as(system, dropped, False)
    # Let go a moment ago: a day from now before the clean-up takes it (the teacher may write the post
    # anew); `dropped` as if that day had passed.
    await age(system, dropped, "released_at")
    await clean(system)
    assert await photo_row(system, dropped) is None
    assert await variant_keys(system, school.school_id, dropped) == []
    assert len(await variant_keys(system, school.school_id, kept)) == 3

    async def posts_knows_it_is_gone() -> bool:
        status, body = await post(system, teacher, group, [dropped])
        return status == 422 and body["error"]["details"][0]["problem"].startswith("no longer available")

    await eventually(posts_knows_it_is_gone, what="posts' copy of the removed photo")
    status, rewritten = await post(system, teacher, group, [kept])
    assert status == 201, rewritten

    async def parent_sees_it() -> bool:
        return await sees(system, parent, kept) == 200

    await eventually(parent_sees_it, within=60, what="the freed photo in the new post")


async def test_an_older_word_of_posts_handled_late_changes_nothing(system: System) -> None:
    _school, group, teacher, _parent = await class_of(system, "Groep 7")
    first, second = await ready_photo(system, teacher), await ready_photo(system, teacher)
    status, scheduled = await post(system, teacher, group, [first], later())
    assert status == 201, scheduled
    await reserved_as(system, first, True)
    post_id = scheduled["post_id"]

    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{post_id}", teacher.token, json={"photo_ids": [second]}
    )

    assert status == 200, edited
    await reserved_as(system, second, True)
    await reserved_as(system, first, False)
    # The post's first word (revision 1: `first` reserved) handled after the edit's.
    late = ScheduledPhotosChanged(
        post_id=uuid.UUID(post_id), group_id=group, photo_ids=[uuid.UUID(first)], revision=1
    )
    async with db(system, "media").acquire() as conn, conn.transaction():
        assert await reservations.follow(conn, late) is None
    assert (await photo_row(system, first))["reserved"] is False
    assert (await photo_row(system, second))["reserved"] is True
    # The first photo is free again for another post of the teacher's.
    status, other = await post(system, teacher, group, [first])
    assert status == 201, other
