"""Every upload judged at the door, through the running system: what is refused leaves nothing in either
bucket (looked at directly in S3, not through the API), what is accepted keeps only the image itself, an
iPhone HEIC comes out upright and without metadata, originals do not outlive their use, and uploads are
limited per person and per school."""

import asyncio
import io
import uuid
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from PIL import ExifTags, Image

from media.cleanup import clean_up
from media.resources import STORAGE
from media.settings import Settings
from shared.app import POOL, SETTINGS
from shared.testing.images import (
    CAMERA_MAKE,
    LEFT_COLOUR,
    RIGHT_COLOUR,
    heic_exif,
    heic_with_gps,
    jpeg_with_gps,
    metadata_report,
    png_bomb,
)
from shared.testing.infra import s3_client
from tests.harness.school import Person, make_class
from tests.harness.system import System, eventually

ORIGINALS, VARIANTS = 0, 1


@dataclass
class Class:
    school_id: uuid.UUID
    group: uuid.UUID
    teacher: Person
    parent: Person


async def new_class(system: System) -> Class:
    school, group, teacher, parent = await make_class(system, "Groep 5")

    async def media_knows_group() -> bool:
        found = await media_db(system).fetchval("SELECT 1 FROM groups WHERE group_id = $1", group)
        return found is not None

    await eventually(media_knows_group, what="media's copy of the group")
    return Class(school.school_id, group, teacher, parent)


@pytest.fixture(scope="module")
async def klass(system: System) -> Class:
    return await new_class(system)


def media_db(system: System) -> Any:
    return system.services["media"].app[POOL]


async def stored(system: System, which: int, school_id: uuid.UUID) -> dict[str, bytes]:
    """Every object of the school in the originals (0) or variants (1) bucket, read straight from S3."""

    def read() -> dict[str, bytes]:
        s3 = s3_client()
        found = {}
        listing = s3.list_objects_v2(Bucket=system.buckets[which], Prefix=f"{school_id}/")
        for item in listing.get("Contents", []):
            body = s3.get_object(Bucket=system.buckets[which], Key=item["Key"])["Body"]
            found[item["Key"]] = body.read()
        return found

    return await asyncio.to_thread(read)


async def upload(
    system: System, klass: Class, data: bytes, content_type: str = "image/jpeg"
) -> tuple[int, Any, Any]:
    assert system.http is not None
    async with system.http.post(
        system.url("media", f"/groups/{klass.group}/photos"),
        data=io.BytesIO(data),
        headers={"Authorization": f"Bearer {klass.teacher.token}", "Content-Type": content_type},
    ) as response:
        return response.status, await response.json(), response.headers


def zip_with(name: str, content: bytes) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(name, content)
    return archive.getvalue()


PHOTO = jpeg_with_gps(1600, 1200, textured=True)


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        # 20000 x 20000 pixels in a few hundred kB.
        (png_bomb(20_000, 20_000), 422, "image too large: 400000000 pixels"),
        (PHOTO[: 101 * 1024], 422, "damaged or incomplete"),
        (PHOTO + zip_with("readme.html", b"<script>alert(1)</script>"), 422, "more than an image"),
        (PHOTO + b"<html><body><script>alert(1)</script></body></html>", 422, "more than an image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', 415, "JPEG"),
        (b"<!doctype html><html><script>alert(1)</script></html>" + bytes(100), 415, "JPEG"),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04" + bytes(60), 415, "JPEG"),
    ],
    ids=[
        "decompression bomb",
        "truncated jpeg",
        "jpeg+zip polyglot",
        "jpeg+html polyglot",
        "svg",
        "html",
        "gif",
    ],
)
async def test_a_refused_upload_leaves_nothing_in_either_bucket(
    system: System, klass: Class, data: bytes, status: int, says: str
) -> None:
    code, body, headers = await upload(system, klass, data, "image/png")

    assert code == status, body
    assert says in body["error"]["message"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in headers["Cache-Control"]
    assert await stored(system, ORIGINALS, klass.school_id) == {}
    assert await stored(system, VARIANTS, klass.school_id) == {}
    rows = await media_db(system).fetchval(
        "SELECT count(*) FROM photos WHERE school_id = $1", klass.school_id
    )
    assert rows == 0


async def test_an_upload_over_the_size_limit_is_refused_with_413(system: System, klass: Class) -> None:
    limit = system.services["media"].app[SETTINGS]
    assert isinstance(limit, Settings)
    code, body, _ = await upload(system, klass, PHOTO + bytes(limit.photo_max_bytes))

    assert code == 413, body
    assert await stored(system, ORIGINALS, klass.school_id) == {}


async def test_data_after_the_image_is_never_stored(system: System, klass: Class) -> None:
    photo = jpeg_with_gps(640, 480)
    # A motion photo: a short video after the JPEG, as Samsung and Google phones write one.
    code, body, headers = await upload(
        system, klass, photo + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
    )

    assert code == 201, body
    assert body["size_bytes"] == len(photo)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert await stored(system, ORIGINALS, klass.school_id) == {
        f"{klass.school_id}/{body['photo_id']}": photo
    }


async def ready(system: System, person: Person, photo_id: str) -> dict[str, Any]:
    view: dict[str, Any] = {}

    async def processed() -> bool:
        status, found = await system.call("GET", "media", f"/photos/{photo_id}", person.token)
        view.update(found)
        return status == 200 and found["status"] in ("ready", "rejected")

    await eventually(processed, within=60, what="the photo processed")
    assert view["status"] == "ready", view
    return view


async def test_an_iphone_heic_comes_out_upright_without_metadata_and_its_original_is_deleted(
    system: System,
) -> None:
    klass = await new_class(system)
    heic = heic_with_gps(1200, 800, orientation=6)
    exif = heic_exif(heic)
    assert exif[ExifTags.Base.Orientation] == 6
    assert ExifTags.GPS.GPSLatitude in exif.get_ifd(ExifTags.IFD.GPSInfo)

    code, uploaded, _ = await upload(system, klass, heic, "image/heic")
    assert code == 201, uploaded
    assert uploaded["content_type"] == "image/heic"
    photo_id = uploaded["photo_id"]
    assert list(await stored(system, ORIGINALS, klass.school_id)) == [f"{klass.school_id}/{photo_id}"]
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={"title": "Uitje", "body": "Uitje naar het bos", "photo_ids": [photo_id]},
    )
    assert status == 201, post
    view = await ready(system, klass.parent, photo_id)

    assert {v["size"]: (v["width"], v["height"]) for v in view["variants"]} == {
        2048: (800, 1200),
        1080: (720, 1080),
        320: (213, 320),
    }
    variants = await stored(system, VARIANTS, klass.school_id)
    assert sorted(variants) == [f"{klass.school_id}/{photo_id}/{size}.jpg" for size in (1080, 2048, 320)]
    for data in variants.values():
        assert metadata_report(data)["segments"] == []
        assert CAMERA_MAKE.encode() not in data
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert image.getexif() == {}
            assert image.height > image.width
            rgb = image.convert("RGB")
            # Turned upright once: the red half (the sensor's left) on top.
            assert all(abs(a - b) < 40 for a, b in zip(rgb.getpixel((5, 5)), LEFT_COLOUR, strict=True))  # type: ignore[arg-type]
            bottom = rgb.getpixel((image.width - 5, image.height - 5))
            assert all(abs(a - b) < 40 for a, b in zip(bottom, RIGHT_COLOUR, strict=True))  # type: ignore[arg-type]

    async def original_gone() -> bool:
        return await stored(system, ORIGINALS, klass.school_id) == {}

    await eventually(original_gone, what="the original deleted once the variants are stored")
    key = await media_db(system).fetchval(
        "SELECT original_key FROM photos WHERE photo_id = $1", uuid.UUID(photo_id)
    )
    assert key is None


async def test_an_upload_no_post_used_within_a_day_is_deleted(system: System) -> None:
    klass = await new_class(system)
    old = (await upload(system, klass, jpeg_with_gps(320, 240)))[1]["photo_id"]
    recent = (await upload(system, klass, jpeg_with_gps(320, 240)))[1]["photo_id"]
    # Processed at once on upload (issue 9, case 4): variants stored, originals deleted.
    for photo_id in (old, recent):
        await ready(system, klass.teacher, photo_id)
    await media_db(system).execute(
        "UPDATE photos SET created_at = now() - interval '25 hours' WHERE photo_id = $1", uuid.UUID(old)
    )

    settings = system.services["media"].app[SETTINGS]
    assert isinstance(settings, Settings)
    async with media_db(system).acquire() as conn, conn.transaction():
        await clean_up(conn, system.services["media"].app[STORAGE], settings)

    assert await stored(system, ORIGINALS, klass.school_id) == {}
    assert sorted(await stored(system, VARIANTS, klass.school_id)) == [
        f"{klass.school_id}/{recent}/{size}.jpg" for size in (1080, 2048, 320)
    ]
    left = await media_db(system).fetch("SELECT photo_id FROM photos WHERE school_id = $1", klass.school_id)
    assert [str(r["photo_id"]) for r in left] == [recent]


async def fake_uploads(
    system: System, klass: Class, count: int, age: timedelta, status: str, uploader: uuid.UUID
) -> None:
    """Rows as earlier uploads leave them (no object behind them), to reach a limit without sending them."""
    await media_db(system).execute(
        """INSERT INTO photos (photo_id, school_id, group_id, uploader_id, content_type, size_bytes, status,
                               created_at)
           SELECT gen_random_uuid(), $1, $2, $3, 'image/jpeg', 1000, $5, now() - $4::interval
           FROM generate_series(1, $6)""",
        klass.school_id,
        klass.group,
        uploader,
        age,
        status,
        count,
    )


@pytest.mark.parametrize(
    ("count", "age", "status", "someone_else", "retry_between", "says"),
    [
        (300, timedelta(minutes=30), "ready", False, (1700, 1800), "at most 300 photos an hour"),
        (500, timedelta(hours=2), "ready", False, (22 * 3600 - 100, 22 * 3600), "not in a post yet"),
        (
            3000,
            timedelta(minutes=10),
            "ready",
            True,
            (2900, 3000),
            "the school's limit of 3000 photos an hour",
        ),
    ],
    ids=["per person per hour", "unused per person", "per school per hour"],
)
async def test_uploads_past_a_limit_are_refused_with_429_and_retry_after(
    system: System,
    count: int,
    age: timedelta,
    status: str,
    someone_else: bool,
    retry_between: tuple[int, int],
    says: str,
) -> None:
    klass = await new_class(system)
    uploader = uuid.uuid4() if someone_else else klass.teacher.person_id
    await fake_uploads(system, klass, count - 1, age, status, uploader)
    assert (await upload(system, klass, jpeg_with_gps(64, 48)))[0] == 201

    code, body, headers = await upload(system, klass, jpeg_with_gps(64, 48))

    assert code == 429, body
    assert says in body["error"]["message"]
    assert retry_between[0] <= int(headers["Retry-After"]) <= retry_between[1]
    assert len(await stored(system, ORIGINALS, klass.school_id)) == 1


async def test_a_photo_rejected_after_it_was_ready_keeps_nothing_in_storage(system: System) -> None:
    klass = await new_class(system)
    photo_id = (await upload(system, klass, jpeg_with_gps(640, 480)))[1]["photo_id"]
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={"title": "Sportdag", "body": "Sportdag", "photo_ids": [photo_id]},
    )
    assert status == 201, post
    await ready(system, klass.parent, photo_id)
    assert len(await stored(system, VARIANTS, klass.school_id)) == 3
    # As a photo taken out of its post is left.
    await media_db(system).execute(
        "UPDATE photos SET status = 'rejected' WHERE photo_id = $1", uuid.UUID(photo_id)
    )

    settings = system.services["media"].app[SETTINGS]
    assert isinstance(settings, Settings)
    async with media_db(system).acquire() as conn, conn.transaction():
        await clean_up(conn, system.services["media"].app[STORAGE], settings)

    assert await stored(system, VARIANTS, klass.school_id) == {}
    assert await stored(system, ORIGINALS, klass.school_id) == {}
    left = await media_db(system).fetchval(
        "SELECT count(*) FROM photo_variants WHERE photo_id = $1", uuid.UUID(photo_id)
    )
    assert left == 0


async def test_refused_uploads_count_towards_the_hourly_limit(system: System) -> None:
    klass = await new_class(system)
    await media_db(system).execute(
        """INSERT INTO upload_refusals (person_id, school_id, refused_at)
           SELECT $1, $2, now() - interval '20 minutes' FROM generate_series(1, 298)""",
        klass.teacher.person_id,
        klass.school_id,
    )
    assert (await upload(system, klass, PHOTO[: 101 * 1024]))[0] == 422
    assert (await upload(system, klass, jpeg_with_gps(64, 48)))[0] == 201

    code, body, headers = await upload(system, klass, jpeg_with_gps(64, 48))

    assert code == 429, body
    assert "refused ones count too" in body["error"]["message"]
    assert 2300 <= int(headers["Retry-After"]) <= 2400
    assert len(await stored(system, ORIGINALS, klass.school_id)) == 1
