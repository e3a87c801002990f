"""Attachments (the newsletter PDF) through the running system, against the real S3: a PDF accepted, put in
a post and downloaded by a parent through a short-lived link that forces a download; whatever is not a
plain PDF refused with a 4xx and nothing left in either bucket (looked at with boto3, not through the API);
the size limit; members only; another's attachment refused by posts; removal from storage when a post lets
go of an attachment or is deleted, and after a day unused."""

import asyncio
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from media.attachments.domain import download_disposition
from media.cleanup import clean_up
from media.resources import STORAGE
from media.settings import Settings
from shared.app import POOL, SETTINGS
from shared.testing import pdfs
from shared.testing.infra import s3_client
from tests.harness.school import Person, add_group, add_person, make_class, teach, wait_until_linked
from tests.harness.system import System, eventually

ORIGINALS, VARIANTS = 0, 1


@dataclass
class Class:
    school_id: uuid.UUID
    group: uuid.UUID
    teacher: Person
    parent: Person


async def new_class(system: System, name: str = "Groep 6") -> Class:
    school, group, teacher, parent = await make_class(system, name)

    async def media_knows_group() -> bool:
        return (
            await db(system, "media").fetchval("SELECT 1 FROM groups WHERE group_id = $1", group) is not None
        )

    await eventually(media_knows_group, what="media's copy of the group")
    return Class(school.school_id, group, teacher, parent)


@pytest.fixture(scope="module")
async def klass(system: System) -> Class:
    return await new_class(system)


def db(system: System, service: str) -> Any:
    return system.services[service].app[POOL]


def media_settings(system: System) -> Settings:
    settings = system.services["media"].app[SETTINGS]
    assert isinstance(settings, Settings)
    return settings


async def stored(system: System, which: int, school_id: uuid.UUID) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Every object of the school in the bucket (0 originals, 1 variants), with its headers, read from S3."""

    def read() -> dict[str, tuple[bytes, dict[str, Any]]]:
        s3 = s3_client()
        found = {}
        listing = s3.list_objects_v2(Bucket=system.buckets[which], Prefix=f"{school_id}/")
        for item in listing.get("Contents", []):
            try:
                got = s3.get_object(Bucket=system.buckets[which], Key=item["Key"])
            except s3.exceptions.NoSuchKey:  # deleted since it was listed
                continue
            found[item["Key"]] = (got["Body"].read(), {k: v for k, v in got.items() if k != "Body"})
        return found

    return await asyncio.to_thread(read)


async def nothing_stored(system: System, school_id: uuid.UUID) -> bool:
    return (
        await stored(system, ORIGINALS, school_id) == {} and await stored(system, VARIANTS, school_id) == {}
    )


async def upload(
    system: System,
    group: uuid.UUID,
    teacher: Person,
    data: bytes,
    filename: str | None = "Nieuwsbrief december.pdf",
    content_type: str = "application/pdf",
) -> tuple[int, Any, Any]:
    assert system.http is not None
    async with system.http.post(
        system.url("media", f"/groups/{group}/attachments"),
        params={"filename": filename} if filename is not None else {},
        data=io.BytesIO(data),
        headers={"Authorization": f"Bearer {teacher.token}", "Content-Type": content_type},
    ) as response:
        return response.status, await response.json(), response.headers


async def uploaded(system: System, klass: Class, data: bytes, filename: str = "Nieuwsbrief.pdf") -> str:
    """Upload, and wait until posts has the copy (AttachmentUploaded) so a post can name it."""
    status, body, _ = await upload(system, klass.group, klass.teacher, data, filename)
    assert status == 201, body
    attachment_id = uuid.UUID(body["attachment_id"])

    async def posts_knows() -> bool:
        found = await db(system, "posts").fetchval(
            "SELECT 1 FROM attachments WHERE attachment_id = $1", attachment_id
        )
        return found is not None

    await eventually(posts_knows, what="posts' copy of the attachment")
    return str(attachment_id)


async def link(system: System, person: Person | None, attachment_id: str) -> tuple[int, Any, Any]:
    assert system.http is not None
    headers = {"Authorization": f"Bearer {person.token}"} if person else {}
    async with system.http.get(
        system.url("media", f"/attachments/{attachment_id}"), headers=headers
    ) as response:
        return response.status, await response.json(), response.headers


async def download(system: System, url: str) -> tuple[int, bytes, Any]:
    assert system.http is not None
    async with system.http.get(url) as response:
        return response.status, await response.read(), response.headers


async def test_a_pdf_is_accepted_posted_and_downloaded_by_the_groups_parents_only(
    system: System, klass: Class
) -> None:
    newsletter = pdfs.newsletter()
    status, body, headers = await upload(
        system,
        klass.group,
        klass.teacher,
        newsletter,
        "..\\..\\Nieuwsbrief d\u00e9cembre\u202e.pdf",
        "text/html",
    )
    assert status == 201, body
    assert headers["X-Content-Type-Options"] == "nosniff"
    attachment_id = body["attachment_id"]
    assert body == {
        "attachment_id": attachment_id,
        "status": "uploaded",
        "filename": "Nieuwsbrief d\u00e9cembre.pdf",
        "content_type": "application/pdf",
        "size_bytes": len(newsletter),
        "pages": 1,
    }
    objects = await stored(system, VARIANTS, klass.school_id)
    key = f"{klass.school_id}/attachments/{attachment_id}.pdf"
    assert list(objects) == [key]
    assert objects[key][0] == newsletter
    assert objects[key][1]["ContentType"] == "application/pdf"
    assert await stored(system, ORIGINALS, klass.school_id) == {}

    # Until it is posted only its uploader gets a link; the group's parents and anonymous callers get 404.
    for who in (klass.parent, None):
        status, body, headers = await link(system, who, attachment_id)
        assert status == 404, body
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert (await link(system, klass.teacher, attachment_id))[0] == 200

    await uploaded_and_known(system, attachment_id)
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={
            "title": "Nieuwsbrief",
            "body": "De nieuwsbrief van december.",
            "attachment_ids": [attachment_id],
        },
    )
    assert status == 201, post
    shown = {
        "attachment_id": attachment_id,
        "filename": "Nieuwsbrief d\u00e9cembre.pdf",
        "content_type": "application/pdf",
        "size_bytes": len(newsletter),
    }
    assert post["attachments"] == [shown]

    async def parent_gets_link() -> bool:
        return (await link(system, klass.parent, attachment_id))[0] == 200

    await eventually(parent_gets_link, what="media attached the attachment to the post")
    status, view, headers = await link(system, klass.parent, attachment_id)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"].startswith("private")
    assert {k: view[k] for k in shown} == shown
    query = parse_qs(urlsplit(view["url"]).query)
    assert int(query["X-Amz-Expires"][0]) <= 300
    disposition = download_disposition("Nieuwsbrief d\u00e9cembre.pdf")
    assert unquote(query["response-content-disposition"][0]) == unquote(disposition)

    status, data, headers = await download(system, view["url"])
    assert status == 200
    assert data == newsletter
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == disposition
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''Nieuwsbrief%20d%C3%A9cembre.pdf" in headers["Content-Disposition"]

    # The feed and the teacher's view list it.
    status, feed = await system.call("GET", "posts", "/feed", klass.parent.token)
    assert status == 200, feed
    assert [p["attachments"] for p in feed["posts"] if p["post_id"] == post["post_id"]] == [[shown]]
    status, page = await system.call("GET", "posts", f"/groups/{klass.group}/posts", klass.teacher.token)
    assert status == 200, page
    assert [p["attachments"] for p in page["posts"] if p["post_id"] == post["post_id"]] == [[shown]]

    # Outsiders: another school's teacher and parent, anonymous.
    other = await new_class(system, "Groep 7")
    for who in (other.teacher, other.parent, None):
        status, body, _ = await link(system, who, attachment_id)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"

    # The post deleted: the object goes from storage, the row from media, the link from everyone.
    status, _ = await system.call("DELETE", "posts", f"/posts/{post['post_id']}", klass.teacher.token)
    assert status == 204

    async def gone() -> bool:
        # The row goes in the transaction that commits once the object is deleted.
        rows = await db(system, "media").fetchval(
            "SELECT count(*) FROM attachments WHERE school_id = $1", klass.school_id
        )
        return rows == 0 and await stored(system, VARIANTS, klass.school_id) == {}

    await eventually(gone, what="the deleted post's attachment deleted from storage, then its row")
    for who in (klass.parent, klass.teacher):
        assert (await link(system, who, attachment_id))[0] == 404


async def uploaded_and_known(system: System, attachment_id: str) -> None:
    async def posts_knows() -> bool:
        found = await db(system, "posts").fetchval(
            "SELECT 1 FROM attachments WHERE attachment_id = $1", uuid.UUID(attachment_id)
        )
        return found is not None

    await eventually(posts_knows, what="posts' copy of the attachment")


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (pdfs.html_named_pdf(), 415, "only PDF"),
        (pdfs.html_then_pdf(), 415, "only PDF"),
        (pdfs.pdf_with_zip(), 422, "does not end as a PDF ends"),
        (pdfs.pdf_with_zip_inside(), 422, "an archive is hidden"),
        (pdfs.with_javascript(), 422, "JavaScript"),
        (pdfs.with_hidden_javascript(), 422, "active content"),
        (pdfs.with_launch_action(), 422, "Launch"),
        (pdfs.with_embedded_file(), 422, "EmbeddedFiles"),
        (pdfs.encrypted(), 422, "password"),
        (pdfs.newsletter()[: len(pdfs.newsletter()) // 2], 422, "damaged or incomplete"),
        (b"", 422, "empty"),
    ],
    ids=[
        "html renamed .pdf",
        "html+pdf polyglot",
        "pdf+zip polyglot",
        "zip inside pdf",
        "javascript",
        "hidden javascript",
        "launch action",
        "embedded file",
        "encrypted",
        "truncated",
        "empty",
    ],
)
async def test_what_is_not_a_plain_pdf_is_refused_and_leaves_nothing_in_storage(
    system: System, klass: Class, data: bytes, status: int, says: str
) -> None:
    code, body, headers = await upload(system, klass.group, klass.teacher, data, "nieuwsbrief.pdf")

    assert code == status, body
    assert says in body["error"]["message"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "private" in headers["Cache-Control"]
    assert await nothing_stored(system, klass.school_id)
    rows = await db(system, "media").fetchval(
        "SELECT count(*) FROM attachments WHERE school_id = $1", klass.school_id
    )
    assert rows == 0


async def test_an_attachment_over_the_size_limit_is_refused_with_413(system: System, klass: Class) -> None:
    limit = media_settings(system).attachment_max_bytes
    too_large = pdfs.newsletter() + b"%" + bytes(limit)

    code, body, _ = await upload(system, klass.group, klass.teacher, too_large)

    assert code == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert "20 MB" in body["error"]["message"]
    assert await nothing_stored(system, klass.school_id)


async def test_a_streamed_upload_over_the_limit_is_cut_off_with_413(system: System, klass: Class) -> None:
    """Without a Content-Length the body is counted while it streams to disk."""
    limit = media_settings(system).attachment_max_bytes

    async def body() -> Any:
        yield pdfs.newsletter()
        chunk = bytes(1024 * 1024)
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    assert system.http is not None
    async with system.http.post(
        system.url("media", f"/groups/{klass.group}/attachments"),
        data=body(),
        headers={"Authorization": f"Bearer {klass.teacher.token}", "Content-Type": "application/pdf"},
    ) as response:
        assert response.status == 413
    assert await nothing_stored(system, klass.school_id)


async def test_parents_and_outsiders_cannot_upload(system: System, klass: Class) -> None:
    other = await new_class(system, "Groep 2")
    assert (await upload(system, klass.group, klass.parent, pdfs.newsletter()))[0] == 403
    assert (await upload(system, klass.group, other.teacher, pdfs.newsletter()))[0] == 404
    assert await nothing_stored(system, klass.school_id)


async def test_a_link_expires(system: System, klass: Class) -> None:
    attachment_id = await uploaded(system, klass, pdfs.newsletter())
    key = f"{klass.school_id}/attachments/{attachment_id}.pdf"
    storage = system.services["media"].app[STORAGE]
    url = storage.presigned_attachment_url(key, 1, "application/pdf", download_disposition("a.pdf"))
    assert (await download(system, url))[0] == 200
    await asyncio.sleep(2.5)

    status, _, _ = await download(system, url)

    assert status == 403


async def test_a_post_takes_only_its_writers_own_unused_attachments_of_its_group(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 4")
    klass = Class(school.school_id, group, teacher, parent)
    colleague = await add_person(system, school, "collega", "teacher", "Groep 4")
    await add_group(system, school, "Groep 5")
    await teach(system, school, teacher, "Groep 5")
    for person, in_group in ((colleague, group), (teacher, school.groups["Groep 5"])):
        await wait_until_linked(system, person, in_group)
    own = await uploaded(system, klass, pdfs.newsletter())
    theirs = await uploaded(system, Class(school.school_id, group, colleague, parent), pdfs.newsletter())
    elsewhere = await uploaded(
        system, Class(school.school_id, school.groups["Groep 5"], teacher, parent), pdfs.newsletter()
    )

    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={
            "title": "Nieuws",
            "body": "Zie bijlagen",
            "attachment_ids": [own, theirs, elsewhere, str(uuid.uuid4())],
        },
    )

    assert status == 422, body
    problems = {d["field"]: d["problem"] for d in body["error"]["details"]}
    assert set(problems) == {"attachment_ids[1]", "attachment_ids[2]", "attachment_ids[3]"}
    assert "another group" in problems["attachment_ids[2]"]
    assert problems["attachment_ids[1]"] == problems["attachment_ids[3]"]
    # Nothing half-written: the day's post is still possible, with the teacher's own attachment.
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Zie bijlage", "attachment_ids": [own]},
    )
    assert status == 201, post
    assert [a["attachment_id"] for a in post["attachments"]] == [own]
    # A colleague's edit keeps the author's attachment and adds their own; both reach the parents.
    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{post['post_id']}", colleague.token, json={"attachment_ids": [own, theirs]}
    )
    assert status == 200, edited
    assert [a["attachment_id"] for a in edited["attachments"]] == [own, theirs]

    async def parent_gets_both() -> bool:
        codes = [(await link(system, parent, a))[0] for a in (own, theirs)]
        return codes == [200, 200]

    await eventually(parent_gets_both, what="both attachments served to the group")


async def test_an_edit_that_leaves_an_attachment_out_deletes_it(system: System) -> None:
    klass = await new_class(system, "Groep 8")
    first = await uploaded(system, klass, pdfs.newsletter(b"Deel 1"))
    second = await uploaded(system, klass, pdfs.newsletter(b"Deel 2"))
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={"title": "Nieuws", "body": "Twee bijlagen", "attachment_ids": [first, second]},
    )
    assert status == 201, post
    assert [a["attachment_id"] for a in post["attachments"]] == [first, second]

    async def parent_gets(attachment_id: str) -> bool:
        return (await link(system, klass.parent, attachment_id))[0] == 200

    await eventually(lambda: parent_gets(second), what="the attachments attached")

    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{post['post_id']}", klass.teacher.token, json={"attachment_ids": [second]}
    )
    assert status == 200, edited
    assert [a["attachment_id"] for a in edited["attachments"]] == [second]

    async def first_gone() -> bool:
        return list(await stored(system, VARIANTS, klass.school_id)) == [
            f"{klass.school_id}/attachments/{second}.pdf"
        ]

    await eventually(first_gone, what="the attachment left out deleted from storage")
    assert (await link(system, klass.parent, first))[0] == 404
    assert (await link(system, klass.parent, second))[0] == 200
    # Forgotten by posts too: it cannot come back.
    status, body = await system.call(
        "PATCH", "posts", f"/posts/{post['post_id']}", klass.teacher.token, json={"attachment_ids": [first]}
    )
    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "attachment_ids[0]"


async def test_an_attachment_no_post_used_within_a_day_is_deleted(system: System) -> None:
    klass = await new_class(system, "Groep 1")
    old = await uploaded(system, klass, pdfs.newsletter())
    recent = await uploaded(system, klass, pdfs.newsletter())
    await db(system, "media").execute(
        "UPDATE attachments SET created_at = now() - interval '25 hours' WHERE attachment_id = $1",
        uuid.UUID(old),
    )

    async with db(system, "media").acquire() as conn, conn.transaction():
        await clean_up(conn, system.services["media"].app[STORAGE], media_settings(system))

    assert list(await stored(system, VARIANTS, klass.school_id)) == [
        f"{klass.school_id}/attachments/{recent}.pdf"
    ]
    left = await db(system, "media").fetch(
        "SELECT attachment_id FROM attachments WHERE school_id = $1", klass.school_id
    )
    assert [str(r["attachment_id"]) for r in left] == [recent]

    # Posts forgets it (AttachmentRemoved): a post naming it is refused, the recent one is taken.
    async def posts_forgot() -> bool:
        found = await db(system, "posts").fetchval(
            "SELECT 1 FROM attachments WHERE attachment_id = $1", uuid.UUID(old)
        )
        return found is None

    await eventually(posts_forgot, what="posts' copy forgetting the deleted upload")
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={"title": "Nieuws", "body": "Bijlagen", "attachment_ids": [recent, old]},
    )
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["attachment_ids[1]"]


async def test_uploads_past_the_hourly_limit_are_refused_with_429(system: System) -> None:
    klass = await new_class(system, "Groep 3")
    per_hour = media_settings(system).attachment_uploads_per_person_per_hour
    await db(system, "media").execute(
        """INSERT INTO attachment_refusals (person_id, school_id, refused_at)
           SELECT $1, $2, now() - interval '20 minutes' FROM generate_series(1, $3)""",
        klass.teacher.person_id,
        klass.school_id,
        per_hour - 1,
    )
    assert (await upload(system, klass.group, klass.teacher, pdfs.newsletter()))[0] == 201

    code, body, headers = await upload(system, klass.group, klass.teacher, pdfs.newsletter())

    assert code == 429, body
    assert f"at most {per_hour} attachments an hour" in body["error"]["message"]
    assert 2300 <= int(headers["Retry-After"]) <= 2400
    assert len(await stored(system, VARIANTS, klass.school_id)) == 1


async def test_a_post_right_after_the_upload_finds_it(system: System) -> None:
    """Posts' copy follows one event behind; a post sent at once waits for it rather than refusing."""
    klass = await new_class(system, "Groep 5")
    status, body, _ = await upload(system, klass.group, klass.teacher, pdfs.newsletter())
    assert status == 201, body
    assert uuid.UUID(body["attachment_id"]).version == 7

    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={"title": "Nieuws", "body": "Bijlage", "attachment_ids": [body["attachment_id"]]},
    )

    assert status == 201, post
    assert [a["attachment_id"] for a in post["attachments"]] == [body["attachment_id"]]


async def test_a_send_later_posts_attachment_reaches_the_parents_when_it_appears(system: System) -> None:
    klass = await new_class(system, "Groep 3")
    attachment_id = await uploaded(system, klass, pdfs.newsletter())
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{klass.group}/posts",
        klass.teacher.token,
        json={
            "title": "Nieuws",
            "body": "Morgen",
            "attachment_ids": [attachment_id],
            "publish_at": at.isoformat(),
        },
    )
    assert status == 201, post
    assert post["status"] == "scheduled"
    status, scheduled = await system.call(
        "GET", "posts", f"/groups/{klass.group}/scheduled-posts", klass.teacher.token
    )
    assert status == 200, scheduled
    assert [a["attachment_id"] for a in scheduled["posts"][0]["attachments"]] == [attachment_id]
    assert (await link(system, klass.parent, attachment_id))[0] == 404

    # Its time comes (moved to now rather than waiting): the send-later job publishes it with its attachment.
    await db(system, "posts").execute(
        "UPDATE posts SET publish_at = now() WHERE post_id = $1", uuid.UUID(post["post_id"])
    )

    async def parent_gets_link() -> bool:
        return (await link(system, klass.parent, attachment_id))[0] == 200

    await eventually(parent_gets_link, within=60, what="the attachment served once the post appeared")
