"""Several relays on one outbox (replicas of a service) share the rows: each event goes out once."""

import asyncio
from collections import Counter

import aio_pika
import asyncpg

from shared import bus
from shared.envelope import Event, register
from shared.outbox import OutboxRelay, publish
from shared.testing.infra import create_vhost, delete_vhost


@register
class Counted(Event):
    type = "test.counted"
    n: int


async def test_two_relays_draining_one_outbox_publish_every_event_exactly_once(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database
    async with pool.acquire() as conn, conn.transaction():
        ids = {str((await publish(conn, Counted(n=n), None)).event_id) for n in range(600)}
    amqp_url = await create_vhost()
    connection = await bus.connect(amqp_url, "test-replicas")
    try:
        channel = await bus.publisher_channel(connection)
        exchange = await bus.declare_exchange(channel, "klaspost.events")
        queue = await channel.declare_queue("replicas-tap", durable=True)
        await queue.bind(exchange, routing_key=Counted.type)
        relays = [OutboxRelay(pool, exchange, batch=50, timeout=10) for _ in range(2)]
        sent = await asyncio.gather(*(relay.drain() for relay in relays))
        assert sum(sent) == 600
        assert all(count > 0 for count in sent)  # both did part of the work

        seen: Counter[str] = Counter()
        while len(seen) < 600:
            message = await queue.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                break
            seen[str(message.message_id)] += 1
        assert set(seen) == ids
        assert set(seen.values()) == {1}
        unsent = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND event_id::text = ANY($1)", list(ids)
        )
        assert unsent == 0
    finally:
        await connection.close()
        await delete_vhost(amqp_url)


async def test_an_unroutable_event_waits_in_the_outbox_without_holding_up_the_rest(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database
    async with pool.acquire() as conn, conn.transaction():
        routed = (await publish(conn, Counted(n=1), None)).event_id
        await conn.execute(
            "INSERT INTO outbox (event_id, routing_key, envelope) VALUES (gen_random_uuid(), 'nobody.listens', $1)",
            {"type": "nobody.listens", "version": 1, "payload": {}},
        )
    amqp_url = await create_vhost()
    connection = await bus.connect(amqp_url, "test-unroutable")
    try:
        channel = await bus.publisher_channel(connection)
        exchange = await bus.declare_exchange(channel, "klaspost.events")
        queue = await channel.declare_queue("unroutable-tap", durable=True)
        await queue.bind(exchange, routing_key=Counted.type)
        await OutboxRelay(pool, exchange, batch=50, timeout=10).drain()
        message = await queue.get(no_ack=True, timeout=5)
        assert isinstance(message, aio_pika.abc.AbstractIncomingMessage)
        assert message.message_id == str(routed)
        row = await pool.fetchrow(
            "SELECT attempts, last_error, next_attempt_at > now() AS later FROM outbox WHERE routing_key = 'nobody.listens'"
        )
        assert row["attempts"] == 1
        assert "NO_ROUTE" in row["last_error"]
        assert row["later"]  # backed off, not retried in a tight loop
    finally:
        await connection.close()
        await delete_vhost(amqp_url)
