"""Deletion and retention against the real S3 server: a deleted post's photo leaves both buckets with the
clean-up, and every photo of a school year is purged `photo_retention_days` after the year's last day (not a
day before): variants, original and row, with posts told and the round reported (log, /metrics). The
buckets are listed directly with boto3, not through the API."""

import asyncio
import logging
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from media.cleanup import clean_up
from media.resources import STORAGE
from media.retention import purge_expired
from media.settings import Settings
from shared.app import POOL, settings_of
from shared.testing.images import jpeg_with_gps
from shared.testing.infra import s3_client
from tests.harness.school import Person, add_group, make_class, teach, upload_photo, wait_until_linked
from tests.harness.system import System, eventually


def keys_of(bucket: str, school_id: uuid.UUID) -> list[str]:
    listed = s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{school_id}/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def post_photo(system: System, teacher: Person, group: uuid.UUID, title: str) -> tuple[str, str]:
    """A new post with one new photo, once the photo is ready: (post_id, photo_id)."""
    photo_id: str = (await upload_photo(system, teacher, jpeg_with_gps(1200, 900), "image/jpeg", group))[
        "photo_id"
    ]
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": title, "body": "Kijk!", "photo_ids": [photo_id]},
    )
    assert status == 201, post

    async def ready() -> bool:
        code, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
        return code == 200 and view["status"] == "ready"

    await eventually(ready, what="the photo processed")
    return str(post["post_id"]), photo_id


async def test_a_deleted_post_and_retention_leave_the_buckets_empty_of_its_photos(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 6")
    # A second group of the same teacher: one post a day per group (seed rule 5) and two posts here.
    other = await add_group(system, school, "Groep 7")
    await teach(system, school, teacher, "Groep 7")
    await wait_until_linked(system, teacher, other)
    media = system.services["media"].app
    pool, storage, settings = media[POOL], media[STORAGE], settings_of(media, Settings)
    originals, variants = system.buckets

    deleted_post, deleted_photo = await post_photo(system, teacher, group, "Eerste dag")
    kept_post, kept_photo = await post_photo(system, teacher, other, "Tweede dag")
    assert len(await asyncio.to_thread(keys_of, variants, school.school_id)) == 6

    # A deleted post: its photo is taken out of sight and the clean-up deletes its objects.
    status, body = await system.call("DELETE", "posts", f"/posts/{deleted_post}", teacher.token)
    assert status == 204, body

    async def taken_out() -> bool:
        row = await pool.fetchrow("SELECT status FROM photos WHERE photo_id = $1", uuid.UUID(deleted_photo))
        return row is not None and row["status"] == "rejected"

    await eventually(taken_out, what="media took the deleted post's photo out")
    async with pool.acquire() as conn, conn.transaction():
        await clean_up(conn, storage, settings)
    remaining = await asyncio.to_thread(keys_of, variants, school.school_id)
    assert len(remaining) == 3
    assert [key for key in remaining if deleted_photo in key] == []
    assert await asyncio.to_thread(keys_of, originals, school.school_id) == []
    status, _ = await system.call("GET", "media", f"/photos/{deleted_photo}", parent.token)
    assert status == 404

    # Retention: this school keeps photos 0 days after the year (the default is 365); the year's last day
    # comes from identity's GroupChanged. Kept on that day, purged the day after.
    status, body = await system.call(
        "PATCH",
        "identity",
        f"/schools/{school.school_id}",
        school.admin.token,
        json={"photo_retention_days": 0},
    )
    assert status == 200, body

    async def copied() -> bool:
        days: int | None = await pool.fetchval(
            "SELECT photo_retention_days FROM schools WHERE school_id = $1", school.school_id
        )
        return days == 0

    await eventually(copied, what="media's copy of the school's retention")
    year_ends_on = await pool.fetchval("SELECT year_ends_on FROM groups WHERE group_id = $1", other)
    assert year_ends_on is not None
    last_day = datetime.combine(year_ends_on, time(12), tzinfo=UTC)  # noon UTC: that day in Amsterdam too

    async with pool.acquire() as conn, conn.transaction():
        await purge_expired(conn, storage, settings, at=last_day)
    assert await pool.fetchval("SELECT count(*) FROM photos WHERE school_id = $1", school.school_id) == 2, (
        "purged before the retention ran out"
    )

    caplog.set_level(logging.INFO, logger="media.retention")
    async with pool.acquire() as conn, conn.transaction():
        purged = await purge_expired(conn, storage, settings, at=last_day + timedelta(days=1))
    assert purged.photos >= 2  # the kept photo and the deleted post's row; others' schools keep theirs
    assert purged.variants >= 3
    assert purged.originals == 0
    assert await pool.fetchval("SELECT count(*) FROM photos WHERE school_id = $1", school.school_id) == 0
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM photo_variants WHERE photo_id = ANY($1::uuid[])",
            [uuid.UUID(deleted_photo), uuid.UUID(kept_photo)],
        )
        == 0
    )
    assert await asyncio.to_thread(keys_of, variants, school.school_id) == []
    assert await asyncio.to_thread(keys_of, originals, school.school_id) == []
    (record,) = [r for r in caplog.records if r.getMessage() == "photos purged after their school year"]
    assert record.__dict__["photos"] == purged.photos

    # Posts is told: the purged photo leaves the post that showed it.
    async def gone_from_post() -> bool:
        code, read = await system.call("GET", "posts", f"/posts/{kept_post}", teacher.token)
        return code == 200 and not read["photos"]

    await eventually(gone_from_post, what="posts dropped the purged photo")
    status, _ = await system.call("GET", "media", f"/photos/{kept_photo}", teacher.token)
    assert status == 404
    status, metrics = await system.call("GET", "media", "/metrics")
    assert status == 200
    text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
    (line,) = [
        line for line in text.splitlines() if line.startswith('klaspost_media_purged_total{kind="photos"}')
    ]
    assert int(line.split()[-1]) >= 2
