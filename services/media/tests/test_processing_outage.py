"""Object storage away: a photo being processed waits and is tried again for as long as it takes, then
completes, and no photo is given up for it; an upload is answered 503 with Retry-After and leaves nothing.
Storage goes away through a TCP proxy the test closes and reopens in front of the real S3 server (the
shared server itself stays up for everyone else)."""

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import media
from media.app import spec
from media.domain import MAX_PROCESSING_ATTEMPTS
from media.imaging import PhotoProcessor, ProcessedPhoto
from media.processing import PhotoPipeline
from media.settings import Settings
from media.storage import PhotoStorage, original_key
from shared.app import POOL
from shared.db import create_pool
from shared.migrations import migrate
from shared.testing.images import jpeg_with_gps, metadata_report
from shared.testing.infra import (
    create_bucket,
    create_database,
    create_vhost,
    delete_bucket,
    delete_vhost,
    drop_database,
    free_port,
    random_bucket_name,
    s3_client,
    s3_test_config,
)
from tests.harness.school import make_class
from tests.harness.system import FAST, System, start_service


class TcpProxy:
    """Forwards a loopback port to the S3 server; `close` refuses new connections and cuts open ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.port = free_port()
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._open |= {client_writer, server_writer}
        try:
            await asyncio.gather(
                self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
            )
        finally:
            self._open -= {client_writer, server_writer}
            for writer in (client_writer, server_writer):
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@pytest.fixture
async def outage() -> AsyncIterator[dict[str, Any]]:
    config = s3_test_config()
    host, port = config["s3_endpoint_url"].removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.open()
    database_url = await create_database("media_outage")
    buckets = [random_bucket_name("originals"), random_bucket_name("variants")]
    for bucket in buckets:
        await asyncio.to_thread(create_bucket, bucket)
    settings = Settings.model_validate(
        {
            "database_url": database_url,
            **config,
            "s3_endpoint_url": f"http://127.0.0.1:{proxy.port}",
            "s3_bucket_originals": buckets[0],
            "s3_bucket_variants": buckets[1],
            "s3_max_attempts": 1,
            "storage_retry_seconds": 0.1,
        }
    )
    pool = await create_pool(database_url, 4)
    async with pool.acquire() as conn:
        await migrate(conn, Path(media.__file__).parent / "migrations")
    storage = PhotoStorage(settings)
    processor = PhotoProcessor(1)
    try:
        yield {
            "proxy": proxy,
            "pool": pool,
            "storage": storage,
            "buckets": buckets,
            "pipeline": PhotoPipeline(pool, storage, processor, settings),
            "settings": settings,
        }
    finally:
        await processor.close()
        storage.close()
        await pool.close()
        await proxy.close()
        for bucket in buckets:
            await asyncio.to_thread(delete_bucket, bucket)
        await drop_database(database_url)


def keys(bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3_client().list_objects_v2(Bucket=bucket).get("Contents", []))


async def test_a_photo_processed_while_storage_is_away_waits_and_completes_when_it_is_back(outage) -> None:
    pool, proxy, pipeline = outage["pool"], outage["proxy"], outage["pipeline"]
    originals, variants = outage["buckets"]
    school_id, photo_id, post_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = original_key(school_id, photo_id)
    photo = jpeg_with_gps(1200, 800)
    await asyncio.to_thread(s3_client().put_object, Bucket=originals, Key=key, Body=photo)
    await pool.execute(
        """INSERT INTO photos (photo_id, school_id, group_id, uploader_id, content_type, size_bytes, original_key,
                               status, post_id)
           VALUES ($1, $2, $3, $4, 'image/jpeg', $5, $6, 'processing', $7)""",
        photo_id,
        school_id,
        uuid.uuid4(),
        uuid.uuid4(),
        len(photo),
        key,
        post_id,
    )

    await proxy.close()
    # More rounds than a photo that fails for its own sake would get before it is given up.
    for _ in range(MAX_PROCESSING_ATTEMPTS + 2):
        await asyncio.sleep(0.15)  # the claim given back after the failure runs out
        assert await pipeline.drain() == 1
        row = await pool.fetchrow("SELECT status, attempts FROM photos WHERE photo_id = $1", photo_id)
        assert row["status"] == "processing"
        assert row["attempts"] == 0, "a storage outage is not the photo's failure"
    assert await asyncio.to_thread(keys, variants) == []

    await proxy.open()
    await asyncio.sleep(0.15)
    assert await pipeline.drain() == 1

    row = await pool.fetchrow("SELECT status, original_key FROM photos WHERE photo_id = $1", photo_id)
    assert (row["status"], row["original_key"]) == ("ready", None)
    stored = await asyncio.to_thread(keys, variants)
    assert stored == sorted(f"{school_id}/{photo_id}/{size}.jpg" for size in (2048, 1080, 320))
    body = await asyncio.to_thread(s3_client().get_object, Bucket=variants, Key=stored[0])
    assert metadata_report(body["Body"].read())["gps"] is False
    assert await asyncio.to_thread(keys, originals) == []
    event = await pool.fetchval(
        "SELECT envelope->>'type' FROM outbox WHERE envelope->'payload'->>'photo_id' = $1", str(photo_id)
    )
    assert event == "media.photo_processed"


class StorageGoesAwayWhileProcessing(PhotoProcessor):
    """A worker pool that closes the proxy while the first photo is being decoded: the original has been
    read, the variants are not written yet."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__(1)
        self._proxy = proxy
        self.outages = 0

    async def process(
        self,
        path: str,
        sizes: Sequence[int],
        max_pixels: int,
        quality: int = 80,
        watermark: str | None = None,
    ) -> ProcessedPhoto:
        if self.outages == 0:
            self.outages += 1
            await self._proxy.close()
        return await super().process(path, sizes, max_pixels, quality, watermark)


async def test_storage_stopped_during_processing_the_photo_completes_once_it_is_back(outage) -> None:
    pool, proxy, storage = outage["pool"], outage["proxy"], outage["storage"]
    originals, variants = outage["buckets"]
    settings = outage["settings"]
    processor = StorageGoesAwayWhileProcessing(proxy)
    pipeline = PhotoPipeline(pool, storage, processor, settings)
    school_id, photo_id = uuid.uuid4(), uuid.uuid4()
    key = original_key(school_id, photo_id)
    photo = jpeg_with_gps(1600, 1200)
    await asyncio.to_thread(s3_client().put_object, Bucket=originals, Key=key, Body=photo)
    await pool.execute(
        """INSERT INTO photos (photo_id, school_id, group_id, uploader_id, content_type, size_bytes, original_key,
                               status, post_id)
           VALUES ($1, $2, $3, $4, 'image/jpeg', $5, $6, 'processing', $7)""",
        photo_id,
        school_id,
        uuid.uuid4(),
        uuid.uuid4(),
        len(photo),
        key,
        uuid.uuid4(),
    )
    try:
        assert await pipeline.drain() == 1
        assert processor.outages == 1
        row = await pool.fetchrow("SELECT status, attempts FROM photos WHERE photo_id = $1", photo_id)
        assert (row["status"], row["attempts"]) == ("processing", 0)
        assert await asyncio.to_thread(keys, variants) == []

        await proxy.open()
        await asyncio.sleep(0.15)  # the claim given back after the failure runs out
        assert await pipeline.drain() == 1
    finally:
        await processor.close()
    row = await pool.fetchrow("SELECT status, original_key FROM photos WHERE photo_id = $1", photo_id)
    assert (row["status"], row["original_key"]) == ("ready", None)
    assert await asyncio.to_thread(keys, variants) == sorted(
        f"{school_id}/{photo_id}/{size}.jpg" for size in (2048, 1080, 320)
    )
    assert await asyncio.to_thread(keys, originals) == []


async def test_an_upload_while_storage_is_away_is_answered_503_and_leaves_nothing(system: System) -> None:
    """A second media instance, its storage behind the closed proxy; the group and the teacher are put in
    its copies directly (it has a broker vhost of its own, so it takes no events from the system's)."""
    school, group, teacher, _parent = await make_class(system, "Groep 3")
    config = s3_test_config()
    host, port = config["s3_endpoint_url"].removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.open()
    amqp_url, database_url = await create_vhost(), await create_database("media_upload_outage")
    identity = system.services["identity"].url
    settings = Settings.model_validate(
        {
            "http_port": free_port(),
            "database_url": database_url,
            "amqp_url": amqp_url,
            "jwks_url": f"{identity}/.well-known/jwks.json",
            **config,
            "s3_endpoint_url": f"http://127.0.0.1:{proxy.port}",
            "s3_bucket_originals": system.buckets[0],
            "s3_bucket_variants": system.buckets[1],
            "s3_max_attempts": 1,
            **FAST,
        }
    )
    media = await start_service(spec(), settings)
    try:
        pool = media.app[POOL]
        await pool.execute(
            "INSERT INTO groups (group_id, school_id, revision) VALUES ($1, $2, 1)", group, school.school_id
        )
        await pool.execute(
            "INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, 'teacher', true, 1)",
            group,
            teacher.person_id,
        )
        await proxy.close()
        assert system.http is not None
        async with system.http.post(
            f"{media.url}/groups/{group}/photos",
            data=io.BytesIO(jpeg_with_gps(640, 480)),
            headers={"Authorization": f"Bearer {teacher.token}", "Content-Type": "image/jpeg"},
        ) as response:
            assert response.status == 503, await response.text()
            assert int(response.headers["Retry-After"]) > 0
            error = (await response.json())["error"]
            assert (error["code"], error["message"]) == (
                "unavailable",
                "photos cannot be stored right now; try again shortly",
            )
        assert await pool.fetchval("SELECT count(*) FROM photos") == 0
        listed = await asyncio.to_thread(
            s3_client().list_objects_v2, Bucket=system.buckets[0], Prefix=f"{school.school_id}/"
        )
        assert not listed.get("Contents")
    finally:
        await media.runner.cleanup()
        await proxy.close()
        await drop_database(database_url)
        await delete_vhost(amqp_url)
