"""Photos through the running system: a teacher uploads, only the uploader sees the photo until it is
posted, a photo goes only into its uploader's posts (others are refused when the post is written), and
an upload in any accepted format comes out as metadata-free JPEG variants behind short-lived links."""

import asyncio
import io
import uuid
from typing import Any

from PIL import Image

from media.resources import PIPELINE
from shared.app import POOL
from shared.testing.images import jpeg_with_gps, png_bytes
from shared.testing.infra import s3_client
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    make_school,
    teach,
    upload_photo,
    wait_until_linked,
)
from tests.harness.system import System, eventually


async def photo_status(system: System, person: Person, photo_id: str) -> int:
    status, _ = await system.call("GET", "media", f"/photos/{photo_id}", person.token)
    return status


async def post_with(
    system: System, teacher: Person, group: uuid.UUID, *photo_ids: str, body: str = "Kijk!"
) -> tuple[int, Any]:
    return await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": body, "photo_ids": list(photo_ids)},
    )


async def handled_by_media(system: System, post_id: str) -> None:
    """Until media has handled the post's PostPublished event (attached its photos, or refused to)."""
    event_id = (
        await system.services["posts"]
        .app[POOL]
        .fetchval("SELECT event_id FROM outbox WHERE envelope->'payload'->>'post_id' = $1", post_id)
    )
    assert event_id is not None

    async def handled() -> bool:
        found = (
            await system.services["media"]
            .app[POOL]
            .fetchval("SELECT 1 FROM inbox WHERE event_id = $1", event_id)
        )
        return found is not None

    await eventually(handled, what="media handled the post")


async def photo_row(system: System, photo_id: str) -> Any:
    return (
        await system.services["media"]
        .app[POOL]
        .fetchrow("SELECT status, post_id, group_id FROM photos WHERE photo_id = $1", uuid.UUID(photo_id))
    )


async def two_classes(system: System) -> tuple[School, Person, Person, Person, Person]:
    """Groep 1 with teacher A and parent 1, Groep 2 with teacher B and parent 2, in one school."""
    school = await make_school(system)
    for name in ("Groep 1", "Groep 2"):
        await add_group(system, school, name)
    teacher_a = await add_person(system, school, "juf", "teacher", "Groep 1")
    parent_1 = await add_person(system, school, "ouder1", "guardian", "Groep 1")
    teacher_b = await add_person(system, school, "meester", "teacher", "Groep 2")
    parent_2 = await add_person(system, school, "ouder2", "guardian", "Groep 2")
    for person, group in (
        (teacher_a, "Groep 1"),
        (parent_1, "Groep 1"),
        (teacher_b, "Groep 2"),
        (parent_2, "Groep 2"),
    ):
        await wait_until_linked(system, person, school.groups[group])
    return school, teacher_a, parent_1, teacher_b, parent_2


async def test_an_uploaded_photo_is_seen_only_by_its_uploader_until_it_is_posted(system: System) -> None:
    school, teacher_a, parent_1, teacher_b, _parent_2 = await two_classes(system)
    elsewhere = await make_school(system, "De Vrije School")
    await add_group(system, elsewhere, "Groep 1")
    foreign_teacher = await add_person(system, elsewhere, "juf", "teacher", "Groep 1")
    colleague = await add_person(system, school, "collega", "teacher", "Groep 1")
    await wait_until_linked(system, colleague, school.groups["Groep 1"])

    data = jpeg_with_gps(800, 600)
    uploaded = await upload_photo(system, teacher_a, data, "image/jpeg")
    photo_id = uploaded["photo_id"]
    # Accepted and processed at once, before any post uses it (issue 9, case 4).
    assert uploaded == {
        "photo_id": photo_id,
        "status": "processing",
        "size_bytes": len(data),
        "content_type": "image/jpeg",
    }

    assert system.http is not None
    async with system.http.get(
        system.url("media", f"/photos/{photo_id}"), headers={"Authorization": f"Bearer {teacher_a.token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"].startswith("private")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        view = await response.json()
    assert view["photo_id"] == photo_id
    assert view["status"] in ("processing", "ready")
    assert view["notice"]

    for person in (foreign_teacher, colleague, teacher_b, parent_1):
        status, body = await system.call("GET", "media", f"/photos/{photo_id}", person.token)
        assert status == 404, (person.email, body)
        assert body["error"]["code"] == "not_found"


async def shown_as(system: System, reader: Person, post_id: str, photo_id: str, status: str) -> None:
    """Until the post, as ``reader`` reads it, shows the photo with ``status``."""

    async def shown() -> bool:
        code, read = await system.call("GET", "posts", f"/posts/{post_id}", reader.token)
        return code == 200 and read["photos"] == [{"photo_id": photo_id, "status": status}]

    await eventually(shown, within=60, what=f"the post showing its photo {status}")


async def test_a_teacher_cannot_put_another_teachers_photo_in_a_post(system: System) -> None:
    school, teacher_a, parent_1, teacher_b, parent_2 = await two_classes(system)
    photo_id = (await upload_photo(system, teacher_a, jpeg_with_gps(640, 480), "image/jpeg"))["photo_id"]

    status, post = await post_with(system, teacher_b, school.groups["Groep 2"], photo_id)
    # Posts knows whose photo it is (its copy of media's photos): refused before anything is published.
    assert status == 422, post
    assert post["error"]["details"][0]["field"] == "photo_ids[0]"

    # The photo stays the uploader's own, unattached, for the group it was uploaded to; nobody in Groep 2
    # can see it.
    row = await photo_row(system, photo_id)
    assert (row["post_id"], row["group_id"]) == (None, school.groups["Groep 1"])
    assert row["status"] in ("processing", "ready")
    for person in (parent_2, teacher_b, parent_1):
        assert await photo_status(system, person, photo_id) == 404
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher_a.token)
    assert status == 200
    assert view["status"] in ("processing", "ready")


async def test_a_photo_named_in_someone_elses_post_can_still_be_posted_by_its_uploader(
    system: System,
) -> None:
    school, teacher_a, parent_1, teacher_b, parent_2 = await two_classes(system)
    photo_id = (await upload_photo(system, teacher_a, jpeg_with_gps(640, 480), "image/jpeg"))["photo_id"]
    squat, squatted = await post_with(system, teacher_b, school.groups["Groep 2"], photo_id)
    assert squat == 422, squatted

    status, post = await post_with(system, teacher_a, school.groups["Groep 1"], photo_id)
    assert status == 201, post
    await shown_as(system, parent_1, post["post_id"], photo_id, "ready")
    assert await photo_status(system, parent_1, photo_id) == 200
    assert await photo_status(system, parent_2, photo_id) == 404


async def test_a_photo_already_in_a_post_is_not_shown_in_a_second_post(system: System) -> None:
    school, teacher_a, parent_1, _teacher_b, parent_2 = await two_classes(system)
    # Teacher A teaches Groep 2 as well, so a second post there is A's own to make.
    await teach(system, school, teacher_a, "Groep 2")
    await wait_until_linked(system, teacher_a, school.groups["Groep 2"])
    photo_id = (await upload_photo(system, teacher_a, jpeg_with_gps(640, 480), "image/jpeg"))["photo_id"]
    status, first = await post_with(system, teacher_a, school.groups["Groep 1"], photo_id)
    assert status == 201, first
    await shown_as(system, parent_1, first["post_id"], photo_id, "ready")

    status, second = await post_with(system, teacher_a, school.groups["Groep 2"], photo_id, body="Nog eens")
    assert status == 422, second
    assert second["error"]["code"] == "validation_failed"
    # The photo belongs to the first post's group only.
    assert await photo_status(system, parent_2, photo_id) == 404
    await shown_as(system, parent_1, first["post_id"], photo_id, "ready")


async def test_a_png_upload_is_processed_into_jpeg_variants(system: System) -> None:
    school, teacher_a, parent_1, _teacher_b, parent_2 = await two_classes(system)
    # Half-transparent red: JPEG has no alpha, so the variants must come out flattened.
    data = png_bytes(1600, 1200, colour=(255, 0, 0, 128), mode="RGBA")
    uploaded = await upload_photo(system, teacher_a, data, "image/png")
    assert uploaded["content_type"] == "image/png"
    photo_id = uploaded["photo_id"]
    status, post = await post_with(system, teacher_a, school.groups["Groep 1"], photo_id)
    assert status == 201, post

    async def ready() -> bool:
        status, view = await system.call("GET", "media", f"/photos/{photo_id}", parent_1.token)
        return status == 200 and view["status"] == "ready"

    await eventually(ready, within=60, what="the PNG processed")
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", parent_1.token)
    sizes = {v["size"]: (v["width"], v["height"]) for v in view["variants"]}
    # Never upscaled: the 2048 variant is the original 1600 x 1200.
    assert sizes == {2048: (1600, 1200), 1080: (1080, 810), 320: (320, 240)}
    assert system.http is not None
    for variant in view["variants"]:
        async with system.http.get(variant["url"]) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/jpeg"
            jpeg = await response.read()
        assert jpeg.startswith(b"\xff\xd8\xff")
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (variant["width"], variant["height"])
            red, green, blue = image.getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
        # Flattened on white: half-transparent red becomes pink, not dark red.
        assert red > 240
        assert 100 < green < 160
        assert 100 < blue < 160
        # Without the signature the variant is not served.
        async with system.http.get(variant["url"].split("?", 1)[0]) as response:
            assert 400 <= response.status < 500
            assert not (await response.read()).startswith(b"\xff\xd8")

    await shown_as(system, parent_1, post["post_id"], photo_id, "ready")
    assert await photo_status(system, parent_2, photo_id) == 404

    async def all_events_sent() -> bool:
        for service in ("posts", "media"):
            unsent = (
                await system.services[service]
                .app[POOL]
                .fetchval(
                    "SELECT count(*) FROM outbox WHERE envelope->>'school_id' = $1 AND published_at IS NULL",
                    str(school.school_id),
                )
            )
            if unsent:
                return False
        return True

    # Every event the upload, the post and the processing wrote reached the broker: none stuck.
    await eventually(all_events_sent, within=5, what="every event of the photo published")


async def test_an_image_damaged_in_storage_is_rejected_and_leaves_its_post(system: System) -> None:
    school, teacher_a, parent_1, _teacher_b, _parent_2 = await two_classes(system)
    # Processing waits while the photo is damaged in storage after it was kept (damaged uploads are
    # refused at the door, test_upload_door) and the post names it, still processing.
    pipeline = system.services["media"].app[PIPELINE]
    await pipeline.stop()
    try:
        photo_id = (await upload_photo(system, teacher_a, png_bytes(200, 100), "image/png"))["photo_id"]
        key = f"{school.school_id}/{photo_id}"
        await asyncio.to_thread(
            s3_client().put_object,
            Bucket=system.buckets[0],
            Key=key,
            Body=png_bytes(200, 100)[:64] + bytes(200),
        )
        status, post = await post_with(system, teacher_a, school.groups["Groep 1"], photo_id)
        assert status == 201, post
    finally:
        await pipeline.start()

    # Rejected in processing: the post no longer carries it, the feed never shows it (issue 9, case 4).
    async def left_the_post() -> bool:
        code, read = await system.call("GET", "posts", f"/posts/{post['post_id']}", parent_1.token)
        return code == 200 and read["photos"] == []

    await eventually(left_the_post, within=60, what="the rejected photo out of its post")
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher_a.token)
    assert status == 200
    assert view["status"] == "rejected"
    assert view["reason"]
    assert view["variants"] == []

    async def original_deleted() -> bool:
        listed = await asyncio.to_thread(s3_client().list_objects_v2, Bucket=system.buckets[0], Prefix=key)
        return not listed.get("Contents")

    await eventually(original_deleted, what="the rejected photo's original deleted")
