"""The test helpers work against the real PostgreSQL, RabbitMQ and Swift S3 servers."""

import asyncio

import aio_pika
import aiohttp
import aiormq
import asyncpg
import pytest
from yarl import URL

from shared.testing.infra import (
    close_all_broker_connections,
    create_bucket,
    create_database,
    create_vhost,
    delete_bucket,
    delete_vhost,
    drop_database,
    free_port,
    random_bucket_name,
    s3_client,
)


async def test_a_database_is_created_then_dropped_even_with_a_connection_open():
    dsn = await create_database("infra")
    conn = await asyncpg.connect(dsn)
    try:
        assert (await conn.fetchval("SELECT current_database()")).startswith("klaspost_test_infra_")
        await drop_database(dsn)
    finally:
        conn.terminate()
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(dsn)


async def test_dropping_a_database_that_is_not_a_test_database_is_refused():
    with pytest.raises(ValueError, match="not a test database"):
        await drop_database("postgresql://postgres@127.0.0.1:5432/postgres")


async def test_a_vhost_carries_messages_then_is_deleted():
    url = await create_vhost()
    try:
        async with await aio_pika.connect(url) as conn:
            channel = await conn.channel()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=queue.name)
            message = await queue.get(timeout=5)
            await message.ack()
            assert message.body == b"hello"
    finally:
        await delete_vhost(url)
    with pytest.raises(aiormq.exceptions.AMQPError):  # the broker refuses a vhost it does not have
        await aio_pika.connect(url)


async def test_the_fault_switch_closes_the_connections_of_the_vhost():
    url = await create_vhost()
    try:
        conn = await aio_pika.connect(url)
        closed = asyncio.Event()
        conn.close_callbacks.add(lambda *_: closed.set())
        await close_all_broker_connections(url)
        await asyncio.wait_for(closed.wait(), timeout=10)
    finally:
        await delete_vhost(url)


async def test_a_bucket_stores_objects_serves_presigned_gets_then_is_deleted():
    name = random_bucket_name("infra")
    s3 = s3_client()
    create_bucket(name)
    try:
        s3.put_object(Bucket=name, Key="photos/a.txt", Body=b"hello", ContentType="text/plain")
        assert s3.get_object(Bucket=name, Key="photos/a.txt")["Body"].read() == b"hello"
        presigned = s3.generate_presigned_url(
            "get_object", Params={"Bucket": name, "Key": "photos/a.txt"}, ExpiresIn=60
        )
        # encoded=True: the signature covers the query exactly as boto3 encoded it.
        async with aiohttp.ClientSession() as http:
            async with http.get(URL(presigned, encoded=True)) as resp:
                assert resp.status == 200
                assert await resp.read() == b"hello"
            tampered = URL(presigned.replace("X-Amz-Expires=60", "X-Amz-Expires=61"), encoded=True)
            async with http.get(tampered) as resp:
                assert resp.status == 403
    finally:
        delete_bucket(name)
    assert name not in [bucket.get("Name") for bucket in s3.list_buckets()["Buckets"]]


def test_a_free_port_can_be_bound():
    port = free_port()
    assert 1024 <= port <= 65535
