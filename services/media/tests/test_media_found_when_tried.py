"""Media, found when tried as a new user would (issue 9), through the running system and read back from S3
directly: a JPEG cut short inside its picture data and closed with an end marker is refused at the door
like any truncated one; a child's erasure while the child's photo is being processed leaves nothing in
either bucket; a teacher who no longer teaches the group no longer gets links to its posted photos."""

import asyncio
import io
import multiprocessing
import os
import signal
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pyvips

from media.cleanup import clean_up
from media.imaging import CheckTookTooLong, Inspection, PhotoProcessor, ProcessedPhoto, WorkerCrashed
from media.resources import PROCESSOR, STORAGE
from media.settings import Settings
from media.storage import PhotoStorage, StorageUnavailable
from shared.app import POOL, SETTINGS
from shared.testing import pdfs
from shared.testing.images import jpeg_with_gps
from shared.testing.infra import s3_client
from tests.harness.school import Person, School, add_child, make_class, upload_photo, wait_until_linked
from tests.harness.system import System, eventually

GROUP = "Groep 6"


def db(system: System, service: str) -> Any:
    return system.services[service].app[POOL]


async def in_buckets(system: System, school_id: uuid.UUID) -> list[str]:
    """Every object of the school in the originals and variants buckets, listed straight from S3."""

    def listed() -> list[str]:
        s3 = s3_client()
        keys = []
        for bucket in system.buckets[:2]:
            found = s3.list_objects_v2(Bucket=bucket, Prefix=f"{school_id}/")
            keys += [f"{bucket}:{item['Key']}" for item in found.get("Contents", [])]
        return keys

    return await asyncio.to_thread(listed)


async def send(system: System, teacher: Person, group: uuid.UUID, data: bytes) -> tuple[int, Any]:
    assert system.http is not None
    async with system.http.post(
        system.url("media", f"/groups/{group}/photos"),
        data=io.BytesIO(data),
        headers={"Authorization": f"Bearer {teacher.token}", "Content-Type": "image/jpeg"},
    ) as response:
        return response.status, await response.json()


async def test_a_jpeg_cut_short_and_closed_with_an_end_marker_is_refused_and_leaves_nothing(
    system: System,
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    photo = jpeg_with_gps(800, 600, orientation=1, textured=True)
    # Half the picture data, then EOI: the structure reads as whole, the lower half decodes as grey.
    damaged = photo[: len(photo) // 2] + b"\xff\xd9"

    status, body = await send(system, teacher, group, damaged)

    assert status == 422, body
    assert "damaged or incomplete" in body["error"]["message"]
    assert await in_buckets(system, school.school_id) == []
    rows = await db(system, "media").fetchval(
        "SELECT count(*) FROM photos WHERE school_id = $1", school.school_id
    )
    assert rows == 0


class HeldWorkers:
    """Holds every photo's processing (the decode in a worker) until released: a worker that is busy
    with a photo while something else happens to it."""

    def __init__(self, processor: PhotoProcessor) -> None:
        self._process = processor.process
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def process(
        self,
        path: str,
        sizes: Sequence[int],
        max_pixels: int,
        quality: int = 80,
        watermark: str | None = None,
    ) -> ProcessedPhoto:
        self.started.set()
        await self.release.wait()
        return await self._process(path, sizes, max_pixels, quality, watermark)


class CountedWrites:
    """Counts the variants written to storage."""

    def __init__(self, storage: PhotoStorage) -> None:
        self._put = storage.put_variant
        self.written: list[str] = []

    async def put_variant(self, key: str, data: bytes, content_type: str) -> None:
        await self._put(key, data, content_type)
        self.written.append(key)


async def child_with_consent(system: System, school: School, name: str) -> uuid.UUID:
    child_id = await add_child(system, school, name, GROUP, [], photo_consent=True)

    async def media_knows() -> bool:
        found = await db(system, "media").fetchval("SELECT 1 FROM children WHERE child_id = $1", child_id)
        return found is not None

    await eventually(media_knows, what="media's copy of the child")
    return child_id


async def test_a_childs_erasure_while_the_photo_is_being_processed_leaves_nothing_in_storage(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    mila = await child_with_consent(system, school, "mila")
    app = system.services["media"].app
    held = HeldWorkers(app[PROCESSOR])
    writes = CountedWrites(app[STORAGE])
    monkeypatch.setattr(app[PROCESSOR], "process", held.process)
    monkeypatch.setattr(app[STORAGE], "put_variant", writes.put_variant)
    try:
        photo_id = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))[
            "photo_id"
        ]
        await asyncio.wait_for(held.started.wait(), 30)
        status, tagged = await system.call(
            "PUT", "media", f"/photos/{photo_id}/children", teacher.token, json={"child_ids": [str(mila)]}
        )
        assert status == 200, tagged
        status, erased = await system.call(
            "POST", "identity", f"/children/{mila}/erasure", school.admin.token
        )
        assert status == 200, erased

        async def row_gone() -> bool:
            found = await db(system, "media").fetchval(
                "SELECT 1 FROM photos WHERE photo_id = $1", uuid.UUID(photo_id)
            )
            return found is None

        await eventually(row_gone, what="the erased child's photo deleted while its worker is busy")
    finally:
        held.release.set()

    async def variants_written() -> bool:
        return len([k for k in writes.written if photo_id in k]) == 3

    await eventually(variants_written, what="the busy worker's variants written")

    async def nothing_left() -> bool:
        return await in_buckets(system, school.school_id) == []

    await eventually(nothing_left, what="the variants written after the erasure deleted")
    rows = await db(system, "media").fetchval(
        "SELECT count(*) FROM photo_variants WHERE photo_id = $1", uuid.UUID(photo_id)
    )
    assert rows == 0


async def test_a_teacher_who_no_longer_teaches_the_group_gets_no_links_to_its_photos(system: System) -> None:
    school, group, teacher, parent = await make_class(system, GROUP)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))["photo_id"]
    status, posted = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Gym", "body": "Gymles", "photo_ids": [photo_id]},
    )
    assert status == 201, posted

    async def ready_for_the_parent() -> bool:
        status, view = await system.call("GET", "media", f"/photos/{photo_id}", parent.token)
        return status == 200 and view["status"] == "ready"

    await eventually(ready_for_the_parent, within=60, what="the posted photo ready")

    status, _ = await system.call(
        "DELETE", "identity", f"/groups/{group}/teachers/{teacher.person_id}", school.admin.token
    )
    assert status == 204
    await wait_until_linked(system, teacher, group, linked=False)

    status, body = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
    assert status == 404, body
    status, body = await system.call("GET", "media", f"/photos/{photo_id}/children", teacher.token)
    assert status == 404, body


class KilledOnce:
    """Kills the worker process (SIGKILL, as the kernel's OOM killer would) once, a moment into the first
    photo's decode."""

    def __init__(self, processor: PhotoProcessor) -> None:
        self._processor = processor
        self._process = processor.process
        self.kills = 0

    async def process(
        self,
        path: str,
        sizes: Sequence[int],
        max_pixels: int,
        quality: int = 80,
        watermark: str | None = None,
    ) -> ProcessedPhoto:
        work = asyncio.ensure_future(self._process(path, sizes, max_pixels, quality, watermark))
        if self.kills == 0:
            self.kills += 1
            await asyncio.sleep(0.1)
            assert not work.done(), "the photo was processed before its worker could be killed"
            for worker in list(self._processor._executor._processes.values()):  # the pool's own processes
                os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        return await work


async def test_a_worker_killed_mid_processing_the_photo_is_processed_once_and_nothing_is_left_over(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    app = system.services["media"].app
    killer = KilledOnce(app[PROCESSOR])
    writes = CountedWrites(app[STORAGE])
    monkeypatch.setattr(app[PROCESSOR], "process", killer.process)
    monkeypatch.setattr(app[STORAGE], "put_variant", writes.put_variant)
    status, uploaded = await send(system, teacher, group, jpeg_with_gps(6000, 4500, textured=True))
    assert status == 201, uploaded
    photo_id = uploaded["photo_id"]

    async def processed() -> bool:
        status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
        return status == 200 and view["status"] != "processing"

    await eventually(processed, within=60, what="the photo processed after its worker was killed")
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
    assert (status, view["status"]) == (200, "ready"), view
    assert killer.kills == 1
    # Each variant written once: the killed round wrote none.
    assert sorted(k for k in writes.written if photo_id in k) == sorted(
        f"{school.school_id}/{photo_id}/{size}.jpg" for size in (2048, 1080, 320)
    )

    async def only_the_variants() -> bool:
        return sorted(await in_buckets(system, school.school_id)) == sorted(
            f"{system.buckets[1]}:{school.school_id}/{photo_id}/{size}.jpg" for size in (2048, 1080, 320)
        )

    await eventually(only_the_variants, what="the original deleted and the variants alone left")


async def test_uploads_at_the_same_moment_cannot_pass_the_hourly_limit_together(system: System) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    await db(system, "media").execute(
        """INSERT INTO upload_refusals (person_id, school_id, refused_at)
           SELECT $1, $2, now() - interval '5 minutes' FROM generate_series(1, 297)""",
        teacher.person_id,
        school.school_id,
    )
    photo = jpeg_with_gps(64, 48)

    answers = await asyncio.gather(*(send(system, teacher, group, photo) for _ in range(8)))

    assert sorted(status for status, _ in answers) == [201] * 3 + [429] * 5, answers

    async def three_kept() -> bool:
        keys = await in_buckets(system, school.school_id)
        return len([k for k in keys if k.startswith(system.buckets[1])]) == 9 and len(keys) == 9

    await eventually(three_kept, within=60, what="three photos processed, nothing of the refused ones")


async def test_a_posted_photo_is_404_to_outsiders_and_its_links_serve_only_the_variant_briefly(
    system: System,
) -> None:
    school, group, teacher, parent = await make_class(system, GROUP)
    _other_school, other_group, other_teacher, other_parent = await make_class(system, GROUP)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))["photo_id"]
    status, posted = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Uitje", "body": "Uitje", "photo_ids": [photo_id]},
    )
    assert status == 201, posted
    assert system.http is not None

    async def view_as(token: str | None) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert system.http is not None
        async with system.http.get(system.url("media", f"/photos/{photo_id}"), headers=headers) as response:
            return response.status, await response.json(), response.headers

    async def ready() -> bool:
        status, view, _ = await view_as(parent.token)
        return status == 200 and view["status"] == "ready"

    await eventually(ready, within=60, what="the posted photo ready for the parent")
    status, view, headers = await view_as(parent.token)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "private, max-age=240"
    assert view["notice"]
    # Without a token the answer is 404, as for anyone else who may not see it (issue 9).
    for who, expected in ((None, 404), (other_teacher.token, 404), (other_parent.token, 404)):
        status, body, headers = await view_as(who)
        assert status == expected, (who, body)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "private" in headers["Cache-Control"]
    # A token refused before the handler (by the shared middleware): nosniff all the same.
    status, body, headers = await view_as("not-a-token")
    assert status == 401, body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert other_group != group

    link = view["variants"][-1]["url"]
    async with system.http.get(link) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert "private" in response.headers["Cache-Control"]
    storage = system.services["media"].app[STORAGE]
    short = storage.presigned_variant_url(f"{school.school_id}/{photo_id}/320.jpg", 1)
    await asyncio.sleep(2.5)
    async with system.http.get(short) as response:
        assert response.status == 403


async def test_a_worker_that_died_while_idle_does_not_refuse_the_next_photo(tmp_path: Path) -> None:
    processor = PhotoProcessor(1)
    try:
        path = str(tmp_path / "photo")
        await asyncio.to_thread(Path(path).write_bytes, jpeg_with_gps(64, 48))
        assert (await processor.inspect(path, 50_000_000)).width == 48
        # Killed between photos (the kernel's OOM killer, an operator): the pool is broken before the next.
        for worker in list(processor._executor._processes.values()):  # the pool's own processes
            os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        await asyncio.sleep(1)

        inspection = await processor.inspect(path, 50_000_000)

        assert (inspection.width, inspection.height) == (48, 64)
    finally:
        await processor.close()


async def test_a_post_naming_a_photo_id_from_the_far_future_is_a_422_not_a_500(system: System) -> None:
    _school, group, teacher, _parent = await make_class(system, GROUP)
    # A well-formed version 7 UUID whose time (year 10889) no datetime holds: made up by a caller.
    made_up = "ffffffff-ffff-7fff-bfff-ffffffffffff"

    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Uitje", "body": "Uitje", "photo_ids": [made_up]},
    )

    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["photo_ids[0]"]


async def test_the_tags_of_a_photo_carry_the_photo_headers(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, GROUP)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(64, 48), "image/jpeg", group))["photo_id"]
    assert system.http is not None
    url = system.url("media", f"/photos/{photo_id}/children")

    for method, person, status in (("GET", teacher, 200), ("PUT", teacher, 200), ("GET", parent, 404)):
        async with system.http.request(
            method, url, headers={"Authorization": f"Bearer {person.token}"}, json={"child_ids": []}
        ) as response:
            assert response.status == status, await response.text()
            # Which children are in a photo and their consent: never sniffed, never in a shared cache.
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"].startswith("private")


class KilledDuringACheck:
    """Kills the worker (SIGKILL) while it checks a large upload and a small one waits for it: once, as soon
    as both are in the pool."""

    def __init__(self, processor: PhotoProcessor) -> None:
        self._processor = processor
        self._inspect = processor.inspect
        self.large_started = asyncio.Event()
        self.small_waiting = asyncio.Event()
        self.kills = 0

    async def inspect(self, path: str, max_pixels: int) -> Inspection:
        work = asyncio.ensure_future(self._inspect(path, max_pixels))
        if self.kills == 0:
            large = await asyncio.to_thread(os.path.getsize, path) > 1_000_000
            (self.large_started if large else self.small_waiting).set()
            if large:
                await asyncio.wait_for(self.small_waiting.wait(), 10)
                await asyncio.sleep(0.05)
                assert not work.done(), "the check ended before its worker could be killed"
                self.kills += 1
                for worker in list(self._processor._executor._processes.values()):  # the pool's own
                    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        return await work


async def test_a_sound_photo_is_not_refused_because_the_worker_died_on_another(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    _school, group, teacher, _parent = await make_class(system, GROUP)
    app = system.services["media"].app
    killer = KilledDuringACheck(app[PROCESSOR])
    monkeypatch.setattr(app[PROCESSOR], "inspect", killer.inspect)

    large = asyncio.ensure_future(send(system, teacher, group, jpeg_with_gps(6000, 4500, textured=True)))
    await asyncio.wait_for(killer.large_started.wait(), 30)
    small = await send(system, teacher, group, jpeg_with_gps(640, 480))
    answers = [small, await large]

    assert killer.kills == 1
    # Both judged again once the worker was replaced: neither refused, nor counted against the teacher.
    assert [status for status, _ in answers] == [201, 201], answers
    refusals = await db(system, "media").fetchval(
        "SELECT count(*) FROM upload_refusals WHERE person_id = $1", teacher.person_id
    )
    assert refusals == 0


# Found when tried, second round (issue 9) -----------------------------------------------------------


async def test_an_anonymous_caller_gets_404_for_a_photo_and_its_tags_and_401_only_for_an_upload(
    system: System,
) -> None:
    _school, group, teacher, _parent = await make_class(system, GROUP)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(64, 48), "image/jpeg", group))["photo_id"]
    assert system.http is not None

    # An existing photo and an unknown id alike: 404, with the photo headers.
    for path in (f"/photos/{photo_id}", f"/photos/{photo_id}/children", f"/photos/{uuid.uuid4()}"):
        async with system.http.get(system.url("media", path)) as response:
            body = await response.json()
            assert response.status == 404, (path, body)
            assert body["error"]["code"] == "not_found"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"] == "private, no-store"
    # What makes or changes something still asks for a token.
    status, body = await send_anonymously(system, f"/groups/{group}/photos", jpeg_with_gps(64, 48))
    assert status == 401, body
    async with system.http.put(
        system.url("media", f"/photos/{photo_id}/children"), json={"child_ids": []}
    ) as response:
        assert response.status == 401


async def send_anonymously(system: System, path: str, data: bytes) -> tuple[int, Any]:
    assert system.http is not None
    async with system.http.post(
        system.url("media", path), data=io.BytesIO(data), headers={"Content-Type": "image/jpeg"}
    ) as response:
        return response.status, await response.json()


class _Bits:
    """Entropy-coded bits, most significant first, with JPEG's byte stuffing and padding."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def put(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.count = 0, 0

    def done(self) -> bytes:
        if self.count:
            self.put((1 << (8 - self.count)) - 1, 8 - self.count)
        return bytes(self.out)


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def many_scans_jpeg(width: int, height: int, coefficients: int = 63) -> bytes:
    """A valid grey progressive JPEG of 1 + 14 x `coefficients` scans (883 by default), as the standard
    allows: each AC coefficient on its own,
    refined bit by bit (13 down to 0); every scan is a pass over every block. 178 kB at 7000x7000 keep
    libvips busy for 14 s (the check's decode at 1/8 scale), the size of the file no guide to it."""
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    dqt = _segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = _segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # DC: one symbol (difference 0), code "0"; AC: the 15 end-of-band runs, 4-bit codes.
    dc = _segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    ac = _segment(0xC4, b"\x10" + bytes([0, 0, 0, 15] + [0] * 12) + bytes(r << 4 for r in range(15)))

    def scan(start: int, end: int, high: int, low: int) -> bytes:
        header = _segment(0xDA, bytes([1, 1, 0x00, start, end, (high << 4) | low]))
        bits = _Bits()
        if start == 0:
            for _ in range(blocks):
                bits.put(0, 1)
        else:
            remaining = blocks
            while remaining:
                run = min(remaining, 32767)
                r = run.bit_length() - 1
                bits.put(r, 4)
                bits.put(run - (1 << r), r)
                remaining -= run
        return header + bits.done()

    scans = [scan(0, 0, 0, 0)]
    for k in range(1, coefficients + 1):
        scans.append(scan(k, k, 0, 13))
        scans += [scan(k, k, low + 1, low) for low in range(12, -1, -1)]
    return b"\xff\xd8" + dqt + sof + dc + ac + b"".join(scans) + b"\xff\xd9"


async def test_a_progressive_jpeg_of_hundreds_of_scans_is_refused_at_the_door_and_leaves_nothing(
    system: System,
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    bomb = many_scans_jpeg(640, 480)
    assert pyvips.Image.new_from_buffer(bomb, "", fail_on="error").avg() == 128  # a valid, decodable JPEG

    status, body = await send(system, teacher, group, bomb)

    assert status == 422, body
    assert "too many scans" in body["error"]["message"]
    assert await in_buckets(system, school.school_id) == []
    rows = await db(system, "media").fetchval(
        "SELECT count(*) FROM photos WHERE school_id = $1", school.school_id
    )
    assert rows == 0


async def test_a_check_past_its_time_limit_is_refused_its_worker_replaced_and_a_queued_one_not_blamed(
    tmp_path: Path,
) -> None:
    processor = PhotoProcessor(1, check_seconds=0.3)
    try:
        paths = []
        # 99 scans (within the limit at the door) over 49 megapixels: more than a second to check.
        slow_file = many_scans_jpeg(7000, 7000, coefficients=7)
        for name, data in (("slow", slow_file), ("quick", jpeg_with_gps(64, 48))):
            (tmp_path / name).mkdir()
            paths.append(str(tmp_path / name / "upload"))
            await asyncio.to_thread(Path(paths[-1]).write_bytes, data)
        await processor.inspect(paths[1], 50_000_000)  # the worker started
        slow = asyncio.ensure_future(processor.inspect(paths[0], 50_000_000))
        await asyncio.sleep(0.05)
        queued = await asyncio.gather(processor.inspect(paths[1], 50_000_000), return_exceptions=True)
        with pytest.raises(CheckTookTooLong):
            await slow
        # Waiting in the queue behind the slow one is not held against the quick one: it ran, or its pool
        # broke under it (judged again by the door), never "too long".
        assert isinstance(queued[0], Inspection | WorkerCrashed), queued
        assert [child.pid for child in multiprocessing.active_children() if child.exitcode is None]
        assert (await processor.inspect(paths[1], 50_000_000)).width == 48  # a new worker took over
    finally:
        await processor.close()


async def test_an_upload_whose_check_takes_too_long_is_refused_and_leaves_nothing(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    monkeypatch.setattr(system.services["media"].app[PROCESSOR], "check_seconds", 0.05)

    status, body = await send(system, teacher, group, jpeg_with_gps(6000, 4500, textured=True))

    assert status == 422, body
    assert body["error"]["message"] == "the photo cannot be used: it took too long to check"
    assert await in_buckets(system, school.school_id) == []
    refusals = await db(system, "media").fetchval(
        "SELECT count(*) FROM upload_refusals WHERE person_id = $1", teacher.person_id
    )
    assert refusals == 1


async def test_a_photo_whose_original_is_missing_from_storage_is_rejected_not_retried_forever(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    storage = system.services["media"].app[STORAGE]
    download = storage.download_original

    async def lost_first(key: str, path: str) -> None:
        # Gone from the bucket before the worker reads it (deleted by hand, lost by the storage).
        await asyncio.to_thread(s3_client().delete_object, Bucket=system.buckets[0], Key=key)
        await download(key, path)

    monkeypatch.setattr(storage, "download_original", lost_first)
    photo_id = (await upload_photo(system, teacher, jpeg_with_gps(64, 48), "image/jpeg", group))["photo_id"]

    async def rejected() -> bool:
        status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
        return status == 200 and view["status"] == "rejected"

    await eventually(rejected, within=20, what="the photo with no original rejected")
    status, view = await system.call("GET", "media", f"/photos/{photo_id}", teacher.token)
    assert status == 200, view
    assert view["reason"] == "the photo's file is missing from storage; upload it again"
    assert await in_buckets(system, school.school_id) == []

    async def posts_knows() -> bool:
        found = await db(system, "posts").fetchval(
            "SELECT status FROM photo_copies WHERE photo_id = $1", uuid.UUID(photo_id)
        )
        return bool(found == "rejected")

    await eventually(posts_knows, what="posts told the photo is rejected")


async def test_refused_uploads_of_every_kind_count_towards_the_hourly_limit(system: System) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    limit = system.services["media"].app[SETTINGS]
    assert isinstance(limit, Settings)
    per_hour = limit.photo_uploads_per_person_per_hour
    await db(system, "media").execute(
        """INSERT INTO upload_refusals (person_id, school_id, refused_at)
           SELECT $1, $2, now() - interval '5 minutes' FROM generate_series(1, $3)""",
        teacher.person_id,
        school.school_id,
        per_hour - 3,
    )

    assert (await send(system, teacher, group, b"<!doctype html><html>" + b" " * 100))[0] == 415
    assert (await send(system, teacher, group, b""))[0] == 422
    assert (await send(system, teacher, group, jpeg_with_gps(64, 48) + bytes(limit.photo_max_bytes)))[
        0
    ] == 413
    status, body = await send(system, teacher, group, jpeg_with_gps(64, 48))

    assert status == 429, body
    assert "refused ones count too" in body["error"]["message"]
    assert await in_buckets(system, school.school_id) == []


async def test_refused_attachments_of_every_kind_count_towards_the_hourly_limit(system: System) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    limit = system.services["media"].app[SETTINGS]
    assert isinstance(limit, Settings)
    await db(system, "media").execute(
        """INSERT INTO attachment_refusals (person_id, school_id, refused_at)
           SELECT $1, $2, now() - interval '5 minutes' FROM generate_series(1, $3)""",
        teacher.person_id,
        school.school_id,
        limit.attachment_uploads_per_person_per_hour - 2,
    )
    assert system.http is not None

    async def attach(data: bytes) -> tuple[int, Any]:
        assert system.http is not None
        async with system.http.post(
            system.url("media", f"/groups/{group}/attachments"),
            params={"filename": "Nieuwsbrief.pdf"},
            data=io.BytesIO(data),
            headers={"Authorization": f"Bearer {teacher.token}", "Content-Type": "application/pdf"},
        ) as response:
            return response.status, await response.json()

    assert (await attach(b"<!doctype html><html>" + b" " * 100))[0] == 415
    assert (await attach(pdfs.newsletter() + bytes(limit.attachment_max_bytes)))[0] == 413
    status, body = await attach(pdfs.newsletter())

    assert status == 429, body
    assert await in_buckets(system, school.school_id) == []


class FailingDeletes:
    """Storage refuses to delete variants while `failing` is set (an outage at that moment)."""

    def __init__(self, storage: PhotoStorage) -> None:
        self._delete = storage.delete_variant
        self.failing = False
        self.refused: list[str] = []

    async def delete_variant(self, key: str) -> None:
        if self.failing:
            self.refused.append(key)
            raise StorageUnavailable("storage is down (test)")
        await self._delete(key)


async def test_variants_of_a_photo_deleted_while_processing_are_deleted_later_when_storage_failed_then(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    school, group, teacher, _parent = await make_class(system, GROUP)
    mila = await child_with_consent(system, school, "mila")
    app = system.services["media"].app
    held = HeldWorkers(app[PROCESSOR])
    deletes = FailingDeletes(app[STORAGE])
    monkeypatch.setattr(app[PROCESSOR], "process", held.process)
    monkeypatch.setattr(app[STORAGE], "delete_variant", deletes.delete_variant)
    try:
        photo_id = (await upload_photo(system, teacher, jpeg_with_gps(640, 480), "image/jpeg", group))[
            "photo_id"
        ]
        await asyncio.wait_for(held.started.wait(), 30)
        status, _ = await system.call(
            "PUT", "media", f"/photos/{photo_id}/children", teacher.token, json={"child_ids": [str(mila)]}
        )
        assert status == 200
        status, _ = await system.call("POST", "identity", f"/children/{mila}/erasure", school.admin.token)
        assert status == 200

        async def row_gone() -> bool:
            found = await db(system, "media").fetchval(
                "SELECT 1 FROM photos WHERE photo_id = $1", uuid.UUID(photo_id)
            )
            return found is None

        await eventually(row_gone, what="the erased child's photo deleted while its worker is busy")
        deletes.failing = True
    finally:
        held.release.set()

    async def worker_tried() -> bool:
        return len(deletes.refused) > 0

    await eventually(worker_tried, within=60, what="the worker's deletion refused by storage")
    await asyncio.sleep(0.5)
    assert len([k for k in await in_buckets(system, school.school_id) if photo_id in k]) == 3
    deletes.failing = False

    settings = app[SETTINGS]
    assert isinstance(settings, Settings)
    async with db(system, "media").acquire() as conn, conn.transaction():
        await clean_up(conn, app[STORAGE], settings)

    assert await in_buckets(system, school.school_id) == []
    left = await db(system, "media").fetchval("SELECT count(*) FROM leftover_variants")
    assert left == 0
