"""Children in photos (issue 9, seed rule 6), through the running system: a teacher tags who appears in a
photo, media keeps each child's photo consent from identity (ChildChanged), a post carrying a photo that
shows a child without consent is refused before anything is published, consent withdrawn later stops new
posts, and a child's erasure (identity) deletes every photo tagged with the child from both buckets (read
straight from S3) and from the post that carried it."""

import asyncio
import uuid
from typing import Any

from shared.app import POOL
from shared.testing.images import jpeg_with_gps
from shared.testing.infra import s3_client
from tests.harness.school import Person, School, add_child, make_class, make_school, upload_photo
from tests.harness.system import System, eventually

GROUP = "Groep 4"


def db(system: System, service: str) -> Any:
    return system.services[service].app[POOL]


async def child(system: System, school: School, name: str, consent: bool) -> uuid.UUID:
    """A child of the group (no guardians) whose consent media knows."""
    child_id = await add_child(system, school, name, GROUP, [], photo_consent=consent)

    async def media_knows() -> bool:
        found = await db(system, "media").fetchval(
            "SELECT photo_consent FROM children WHERE child_id = $1", child_id
        )
        return found is consent

    await eventually(media_knows, what="media's copy of the child's consent")
    return child_id


async def tag(system: System, person: Person, photo_id: str, *child_ids: uuid.UUID) -> tuple[int, Any]:
    return await system.call(
        "PUT",
        "media",
        f"/photos/{photo_id}/children",
        person.token,
        json={"child_ids": [str(c) for c in child_ids]},
    )


async def copy_blocks(system: System, photo_id: str, blocked: set[uuid.UUID]) -> None:
    """Until posts' copy of the photo names exactly ``blocked`` as shown without consent."""

    async def agreed() -> bool:
        found = await db(system, "posts").fetchval(
            "SELECT without_consent FROM photo_copies WHERE photo_id = $1", uuid.UUID(photo_id)
        )
        return found is not None and set(found) == blocked

    await eventually(agreed, what=f"posts' copy of the photo blocking {len(blocked)} children")


async def post(system: System, teacher: Person, group: uuid.UUID, *photo_ids: str) -> tuple[int, Any]:
    return await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Schoolreis", "body": "Wat een dag!", "photo_ids": list(photo_ids)},
    )


async def in_storage(system: System, school_id: uuid.UUID, photo_id: str) -> list[str]:
    """Every object of the photo in both buckets, listed straight from S3."""

    def listed() -> list[str]:
        s3 = s3_client()
        keys = []
        for bucket in system.buckets[:2]:
            found = s3.list_objects_v2(Bucket=bucket, Prefix=f"{school_id}/{photo_id}")
            keys += [f"{bucket}:{item['Key']}" for item in found.get("Contents", [])]
        return keys

    return await asyncio.to_thread(listed)


async def test_a_photo_showing_a_child_without_consent_cannot_be_posted(system: System) -> None:
    school, group, teacher, parent = await make_class(system, GROUP)
    noor = await child(system, school, "noor", consent=False)
    daan = await child(system, school, "daan", consent=True)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))["photo_id"]

    status, tagged = await tag(system, teacher, photo_id, daan, noor)
    assert status == 200, tagged
    assert tagged["postable"] is False
    assert "without photo consent" in tagged["problem"]
    assert {c["child_id"]: c["photo_consent"] for c in tagged["children"]} == {
        str(daan): True,
        str(noor): False,
    }
    await copy_blocks(system, photo_id, {noor})

    status, refused = await post(system, teacher, group, photo_id)
    assert status == 422, refused
    assert refused["error"]["code"] == "validation_failed"
    assert "nothing was published" in refused["error"]["message"]
    [problem] = refused["error"]["details"]
    assert problem["field"] == "photo_ids[0]"
    # Posts names the child from its own copy of the children, so the teacher knows whom to untag.
    assert "Noor de Vries without photo consent" in problem["problem"], problem
    posts = await db(system, "posts").fetchval("SELECT count(*) FROM posts WHERE group_id = $1", group)
    assert posts == 0
    status, feed = await system.call("GET", "posts", "/feed", parent.token)
    assert status == 200
    assert feed["posts"] == []

    # Noor is not in the photo after all: untagged, the photo can be posted.
    status, tagged = await tag(system, teacher, photo_id, daan)
    assert status == 200, tagged
    assert tagged["postable"] is True
    await copy_blocks(system, photo_id, set())
    status, posted = await post(system, teacher, group, photo_id)
    assert status == 201, posted
    status, view = await system.call("GET", "media", f"/photos/{photo_id}/children", teacher.token)
    assert status == 200
    assert [c["child_id"] for c in view["children"]] == [str(daan)]


async def test_consent_given_later_frees_a_photo_and_consent_withdrawn_stops_new_posts(
    system: System,
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    lotte = await child(system, school, "lotte", consent=False)
    sem = await child(system, school, "sem", consent=True)
    first = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))["photo_id"]
    second = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))["photo_id"]
    assert (await tag(system, teacher, first, lotte))[0] == 200
    assert (await tag(system, teacher, second, sem))[0] == 200
    await copy_blocks(system, first, {lotte})

    # The school records Lotte's consent: identity -> media (ChildChanged) -> posts (PhotoChanged).
    status, body = await system.call(
        "PATCH", "identity", f"/children/{lotte}", school.admin.token, json={"photo_consent": True}
    )
    assert status == 200, body
    await copy_blocks(system, first, set())
    status, posted = await post(system, teacher, group, first)
    assert status == 201, posted

    # Sem's parents withdraw consent: the photo of Sem can no longer be added, not even by an edit.
    status, body = await system.call(
        "PATCH", "identity", f"/children/{sem}", school.admin.token, json={"photo_consent": False}
    )
    assert status == 200, body
    await copy_blocks(system, second, {sem})
    status, refused = await system.call(
        "PATCH", "posts", f"/posts/{posted['post_id']}", teacher.token, json={"photo_ids": [first, second]}
    )
    assert status == 422, refused
    assert [d["field"] for d in refused["error"]["details"]] == ["photo_ids[1]"]
    status, read = await system.call("GET", "posts", f"/posts/{posted['post_id']}", teacher.token)
    assert [p["photo_id"] for p in read["photos"]] == [first]


async def test_tagging_refuses_bad_input_and_anyone_but_the_groups_teachers(system: System) -> None:
    school, group, teacher, parent = await make_class(system, GROUP)
    elsewhere = await make_school(system, "De Vrije School")
    await add_child(system, elsewhere, "vreemd", None, [], photo_consent=True)
    foreign_child = elsewhere.children["vreemd"]
    ok = await child(system, school, "bram", consent=True)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(320, 240), "image/jpeg", group))["photo_id"]

    async def media_knows_foreign_child() -> bool:
        found = await db(system, "media").fetchval(
            "SELECT 1 FROM children WHERE child_id = $1", foreign_child
        )
        return found is not None

    await eventually(media_knows_foreign_child, what="media's copy of the other school's child")

    for child_ids, field in (
        ([uuid.uuid4()], "child_ids[0]"),
        ([ok, foreign_child], "child_ids[1]"),
    ):
        status, body = await tag(system, teacher, photo_id, *child_ids)
        assert status == 422, body
        assert [d["field"] for d in body["error"]["details"]] == [field], body
    bodies: list[Any] = [
        {"child_ids": [str(ok), str(ok)]},
        {"child_ids": "bram"},
        {"child_ids": ["bram"]},
        {},
        [],
    ]
    for bad in bodies:
        status, body = await system.call(
            "PUT", "media", f"/photos/{photo_id}/children", teacher.token, json=bad
        )
        assert status == 422, (bad, body)
        assert body["error"]["code"] == "validation_failed"
    status, body = await system.call(
        "PUT",
        "media",
        f"/photos/{photo_id}/children",
        teacher.token,
        data=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, body
    # Nothing was tagged by the refused requests.
    status, view = await system.call("GET", "media", f"/photos/{photo_id}/children", teacher.token)
    assert (status, view["children"]) == (200, [])

    # Only its uploader and the group's teachers tag; anyone else gets 404 (a parent of the group, once
    # the photo is posted and theirs to see, 403).
    status, body = await system.call("PUT", "media", f"/photos/{photo_id}/children", json={"child_ids": []})
    assert status == 401, body
    for who in (parent, elsewhere.admin):
        status, body = await tag(system, who, photo_id, ok)
        assert status == 404, body
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        status, body = await tag(system, teacher, unknown, ok)
        assert status == 404, body
    assert (await post(system, teacher, group, photo_id))[0] == 201

    async def parent_sees_it() -> bool:
        return (await system.call("GET", "media", f"/photos/{photo_id}", parent.token))[0] == 200

    await eventually(parent_sees_it, what="the posted photo visible to the group")
    status, body = await tag(system, parent, photo_id, ok)
    assert status == 403, body
    assert body["error"]["code"] == "forbidden"


async def test_a_childs_erasure_deletes_every_photo_tagged_with_the_child(system: System) -> None:
    school, group, teacher, parent = await make_class(system, GROUP)
    emma = await child(system, school, "emma", consent=True)
    tagged_id = (await upload_photo(system, teacher, jpeg_with_gps(800, 600), "image/jpeg", group))[
        "photo_id"
    ]
    other_id = (await upload_photo(system, teacher, jpeg_with_gps(800, 600), "image/jpeg", group))["photo_id"]
    assert (await tag(system, teacher, tagged_id, emma))[0] == 200
    await copy_blocks(system, tagged_id, set())
    status, posted = await post(system, teacher, group, tagged_id, other_id)
    assert status == 201, posted

    async def both_ready_for_the_parent() -> bool:
        for photo_id in (tagged_id, other_id):
            status, view = await system.call("GET", "media", f"/photos/{photo_id}", parent.token)
            if status != 200 or view["status"] != "ready":
                return False
        return True

    await eventually(both_ready_for_the_parent, within=60, what="both photos ready for the parent")
    assert len(await in_storage(system, school.school_id, tagged_id)) == 3

    status, erased = await system.call("POST", "identity", f"/children/{emma}/erasure", school.admin.token)
    assert status == 200, erased

    async def gone_from_storage() -> bool:
        return await in_storage(system, school.school_id, tagged_id) == []

    await eventually(gone_from_storage, what="the tagged photo deleted from both buckets")

    async def out_of_the_post() -> bool:
        status, read = await system.call("GET", "posts", f"/posts/{posted['post_id']}", parent.token)
        return status == 200 and [p["photo_id"] for p in read["photos"]] == [other_id]

    await eventually(out_of_the_post, what="the tagged photo out of its post")
    for person in (parent, teacher):
        status, _ = await system.call("GET", "media", f"/photos/{tagged_id}", person.token)
        assert status == 404
    rows = await db(system, "media").fetchval(
        """SELECT (SELECT count(*) FROM photos WHERE photo_id = $1)
                + (SELECT count(*) FROM photo_variants WHERE photo_id = $1)
                + (SELECT count(*) FROM photo_children WHERE photo_id = $1 OR child_id = $2)""",
        uuid.UUID(tagged_id),
        emma,
    )
    assert rows == 0
    # The untagged photo of the same post stays, in storage and for the parent.
    assert len(await in_storage(system, school.school_id, other_id)) == 3
    status, view = await system.call("GET", "media", f"/photos/{other_id}", parent.token)
    assert (status, view["status"]) == (200, "ready")
    # A photo can no longer be tagged with the erased child.
    status, body = await tag(system, teacher, other_id, emma)
    assert status == 422, body
