"""Seed rule 6, where a school switched it on: a visible "do not share" mark with the school's name on every
variant, and nothing else of the photo changed; schools without it get the plain variants. Both stay free of
metadata. Photo responses carry the school's share notice, `nosniff` and private caching that never
outlives the links. Variants are read back from the real S3 server, not through the API."""

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat

from media.imaging import process_photo
from shared.app import POOL
from shared.testing.images import jpeg_with_gps, metadata_report
from shared.testing.infra import s3_client
from tests.harness.school import Person, School, make_class, upload_photo
from tests.harness.system import System, eventually

SIZES = (2048, 1080, 320)
MAX_PIXELS = 50_000_000
# The mark's strip is 5 % of the shorter side plus padding; JPEG blocks (16 px) bleed a little above it.
STRIP_SHARE = 0.10
BLEED_PX = 16


def pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Mean absolute difference per channel (0 to 255) of two images within `box`."""
    difference = ImageChops.difference(a.crop(box), b.crop(box))
    return sum(ImageStat.Stat(difference).mean) / 3


def compare(marked: bytes, plain: bytes) -> tuple[float, float]:
    """(difference in the strip at the bottom, difference everywhere above it) of two variants."""
    a, b = pixels(marked), pixels(plain)
    assert a.size == b.size
    width, height = a.size
    strip = round(min(width, height) * STRIP_SHARE)
    bottom = mean_difference(a, b, (0, height - strip // 2, width, height))
    above = mean_difference(a, b, (0, 0, width, height - strip - BLEED_PX))
    return bottom, above


def test_a_watermark_changes_the_bottom_strip_of_every_variant_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_with_gps(1600, 1200))
    plain = process_photo(str(path), SIZES, MAX_PIXELS)
    marked = process_photo(str(path), SIZES, MAX_PIXELS, watermark="Niet delen \u2013 OBS <De> & Lichtstraat")
    for size in SIZES:
        variant = marked.variants[size]
        assert (variant.width, variant.height) == (plain.variants[size].width, plain.variants[size].height)
        bottom, above = compare(variant.data, plain.variants[size].data)
        assert bottom > 40, (size, bottom)
        assert above < 1, (size, above)
        assert metadata_report(variant.data) == metadata_report(plain.variants[size].data)
        assert not any(v for k, v in metadata_report(variant.data).items() if k != "segments")


async def watermarking(system: System, school: School, notice: str) -> None:
    status, body = await system.call(
        "PATCH",
        "identity",
        f"/schools/{school.school_id}",
        school.admin.token,
        json={"watermark_photos": True, "share_notice": notice},
    )
    assert status == 200, body
    assert body["watermark_photos"] is True
    pool = system.services["media"].app[POOL]

    async def copied() -> bool:
        row = await pool.fetchrow(
            "SELECT watermark_photos FROM schools WHERE school_id = $1", school.school_id
        )
        return row is not None and row["watermark_photos"]

    await eventually(copied, what="media's copy of the school watermarks")


async def posted_and_ready(system: System, teacher: Person, group: uuid.UUID, data: bytes) -> str:
    photo_id: str = (await upload_photo(system, teacher, data, "image/jpeg", group))["photo_id"]
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Herfst", "body": "De herfst", "photo_ids": [photo_id]},
    )
    assert status == 201, post

    async def ready() -> bool:
        code, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
        return code == 200 and view["status"] == "ready"

    await eventually(ready, what="the photo processed")
    return photo_id


def stored_variants(bucket: str, school: School, photo_id: str) -> dict[int, bytes]:
    client = s3_client()
    prefix = f"{school.school_id}/{photo_id}/"
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {
        int(key.removeprefix(prefix).removesuffix(".jpg")): client.get_object(Bucket=bucket, Key=key)[
            "Body"
        ].read()
        for key in keys
    }


async def test_variants_of_a_watermarking_school_carry_the_mark_and_others_do_not(
    system: System, tmp_path: Path
) -> None:
    marking, group_a, teacher_a, parent_a = await make_class(system, "Groep 5")
    plain_school, group_b, teacher_b, _parent_b = await make_class(system, "Groep 5")
    notice = "Foto's uit Klaspost zijn alleen voor u: niet doorsturen, niet op sociale media."
    await watermarking(system, marking, notice)

    data = jpeg_with_gps(1600, 1200)
    (tmp_path / "photo.jpg").write_bytes(data)
    reference = process_photo(str(tmp_path / "photo.jpg"), SIZES, MAX_PIXELS)
    marked_id = await posted_and_ready(system, teacher_a, group_a, data)
    plain_id = await posted_and_ready(system, teacher_b, group_b, data)

    variants_bucket = system.buckets[1]
    marked = await asyncio.to_thread(stored_variants, variants_bucket, marking, marked_id)
    plain = await asyncio.to_thread(stored_variants, variants_bucket, plain_school, plain_id)
    assert set(marked) == set(plain) == set(SIZES)
    for size in SIZES:
        bottom, above = compare(marked[size], reference.variants[size].data)
        assert bottom > 40, (size, bottom)
        assert above < 1, (size, above)
        assert max(compare(plain[size], reference.variants[size].data)) < 1, size
        for variant in (marked[size], plain[size]):
            report = metadata_report(variant)
            assert not any(v for k, v in report.items() if k != "segments"), report

    # The parent sees the school's own notice with the photo; the answer may be kept by the browser only,
    # and for less time than its links live.
    assert system.http is not None
    async with system.http.get(
        system.url("media", f"/photos/{marked_id}"), headers={"Authorization": f"Bearer {parent_a.token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        view: dict[str, Any] = await response.json()
        cache = response.headers["Cache-Control"]
    assert view["notice"] == notice
    assert cache.startswith("private, max-age=")
    ttl = int(cache.removeprefix("private, max-age="))
    assert 0 < ttl < 300
    assert all(link["expires_at"] for link in view["variants"])
