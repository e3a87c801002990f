"""The event backbone against the real PostgreSQL and RabbitMQ: outbox → relay → broker →
consumer with inbox, retries, parking and replay."""

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from shared import bus
from shared.consumer import Consumer, Handlers
from shared.db import create_pool
from shared.deadletters import list_parked, replay
from shared.drain import Drainer
from shared.envelope import Envelope, Event, register
from shared.migrations import migrate
from shared.outbox import NOTIFY_CHANNEL, OutboxRelay, publish, to_message
from shared.testing.infra import (
    close_all_broker_connections,
    create_database,
    create_vhost,
    delete_vhost,
    drop_database,
)


@register
class Pinged(Event):
    type = "test.pinged"
    n: int


@register
class Flaky(Event):
    type = "test.flaky"
    fail_times: int


@register
class Held(Event):
    type = "test.held"


@register
class Severing(Event):
    type = "test.severing"
    sever_times: int


failures: Counter[uuid.UUID] = Counter()
broken = {"cause": True}
gate = asyncio.Event()
holding: list[uuid.UUID] = []
handlers = Handlers()


@handlers.on(Pinged)
async def pinged(conn: asyncpg.Connection, env: Envelope, event: Pinged) -> None:
    await conn.execute("INSERT INTO effects (event_id, n) VALUES ($1, $2)", env.event_id, event.n)


@handlers.on(Flaky)
async def flaky(conn: asyncpg.Connection, env: Envelope, event: Flaky) -> None:
    # The effect is written first, so a failure after it proves the rollback too.
    await conn.execute("INSERT INTO effects (event_id, n) VALUES ($1, -1)", env.event_id)
    if event.fail_times < 0 and broken["cause"]:
        raise RuntimeError("the cause is not fixed yet")
    if failures[env.event_id] < event.fail_times:
        failures[env.event_id] += 1
        raise RuntimeError(f"failure {failures[env.event_id]}")


@handlers.on(Held)
async def held(_conn: asyncpg.Connection, env: Envelope, _event: Held) -> None:
    # Keeps its batch running until the test opens the gate.
    holding.append(env.event_id)
    await gate.wait()


@handlers.on(Severing)
async def severing(conn: asyncpg.Connection, env: Envelope, event: Severing) -> None:
    await conn.execute("INSERT INTO effects (event_id, n) VALUES ($1, -2)", env.event_id)
    if failures[env.event_id] < event.sever_times:
        failures[env.event_id] += 1
        # Breaks the whole batch: its transaction can neither roll back nor commit.
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


class Backbone:
    def __init__(self, pool: asyncpg.Pool, dsn: str, amqp_url: str) -> None:
        self.pool, self.dsn, self.amqp_url = pool, dsn, amqp_url

    async def start(self) -> None:
        self.publisher = await bus.connect(self.amqp_url, "test-publisher")
        self.exchange = await bus.declare_exchange(
            await bus.publisher_channel(self.publisher), "klaspost.events"
        )
        self.consumer_conn = await bus.connect(self.amqp_url, "test-consumer")
        self.reconnects = 0

        def reconnected(*_args: object) -> None:
            self.reconnects += 1

        self.publisher.reconnect_callbacks.add(reconnected)
        self.consumer_conn.reconnect_callbacks.add(reconnected)
        self.consumer = Consumer("testsvc", self.pool, handlers, "klaspost.events", [100, 300], 50, 10)
        await self.consumer.start(self.consumer_conn)
        relay = OutboxRelay(self.pool, self.exchange, 100, 10)
        self.drainer = Drainer("test-outbox", self.dsn, NOTIFY_CHANNEL, relay.drain, 0.5)
        await self.drainer.start()

    async def stop(self) -> None:
        await self.drainer.stop()
        await self.consumer_conn.close()
        await self.publisher.close()


@pytest.fixture(scope="module")
async def backbone() -> AsyncIterator[Backbone]:
    dsn = await create_database("backbone")
    amqp_url = await create_vhost()
    pool = await create_pool(dsn, 5)
    async with pool.acquire() as conn:
        await migrate(conn, Path(__file__).parent / "migrations")
    bb = Backbone(pool, dsn, amqp_url)
    await bb.start()
    yield bb
    await bb.stop()
    await pool.close()
    await delete_vhost(amqp_url)
    await drop_database(dsn)


async def emit(pool: asyncpg.Pool, event: Event) -> uuid.UUID:
    async with pool.acquire() as conn, conn.transaction():
        return (await publish(conn, event, None)).event_id


async def effect_counts(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> Counter[uuid.UUID]:
    rows = await pool.fetch("SELECT event_id FROM effects WHERE event_id = ANY($1)", ids)
    return Counter(r["event_id"] for r in rows)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_every_event_takes_effect_exactly_once_when_the_broker_drops_all_connections(
    backbone: Backbone,
) -> None:
    ids: list[uuid.UUID] = []
    for n in range(200):
        ids.append(await emit(backbone.pool, Pinged(n=n)))
        if n == 100:
            await close_all_broker_connections(backbone.amqp_url)

    async def all_handled() -> bool:
        return sum((await effect_counts(backbone.pool, ids)).values()) >= 200

    await eventually(all_handled, within=90)
    await asyncio.sleep(1)  # room for any duplicate to show up
    counts = await effect_counts(backbone.pool, ids)
    assert backbone.reconnects >= 2  # both connections really were cut and came back
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    assert await backbone.pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_a_redelivered_event_has_no_second_effect(backbone: Backbone) -> None:
    event_id = await emit(backbone.pool, Pinged(n=7))

    async def handled() -> bool:
        return (await effect_counts(backbone.pool, [event_id]))[event_id] == 1

    await eventually(handled)
    # Re-send the very same row, as a relay crash between confirm and mark would.
    async with backbone.pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET published_at = NULL WHERE event_id = $1", event_id)
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)

    async def resent() -> bool:
        return bool(
            await backbone.pool.fetchval(
                "SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1", event_id
            )
        )

    await eventually(resent)
    await asyncio.sleep(0.5)
    assert (await effect_counts(backbone.pool, [event_id]))[event_id] == 1


async def test_a_handler_failing_twice_then_succeeding_takes_effect_once(backbone: Backbone) -> None:
    event_id = await emit(backbone.pool, Flaky(fail_times=2))

    async def handled() -> bool:
        return (await effect_counts(backbone.pool, [event_id]))[event_id] >= 1

    await eventually(handled)
    await asyncio.sleep(0.5)
    assert failures[event_id] == 2
    assert (await effect_counts(backbone.pool, [event_id]))[event_id] == 1


async def test_an_always_failing_event_is_parked_and_replay_takes_effect_once(backbone: Backbone) -> None:
    event_id = await emit(backbone.pool, Flaky(fail_times=-1))

    async def parked() -> bool:
        return any(p["message_id"] == str(event_id) for p in await list_parked(backbone.amqp_url, "testsvc"))

    await eventually(parked)
    [entry] = [p for p in await list_parked(backbone.amqp_url, "testsvc") if p["message_id"] == str(event_id)]
    assert entry["attempts"] == 2
    assert "the cause is not fixed yet" in entry["error"]
    assert entry["type"] == "test.flaky"
    assert (await effect_counts(backbone.pool, [event_id]))[event_id] == 0  # every failed try rolled back

    broken["cause"] = False
    assert await replay(backbone.amqp_url, "testsvc", {str(event_id)}) == 1

    async def handled() -> bool:
        return (await effect_counts(backbone.pool, [event_id]))[event_id] >= 1

    await eventually(handled)
    await asyncio.sleep(0.5)
    assert (await effect_counts(backbone.pool, [event_id]))[event_id] == 1
    assert not any(p["message_id"] == str(event_id) for p in await list_parked(backbone.amqp_url, "testsvc"))


async def test_an_unreadable_message_is_parked_not_lost(backbone: Backbone) -> None:
    channel = await backbone.publisher.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(
            b"{not json", message_id="garbage-1", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        ),
        routing_key="testsvc",
    )

    async def parked() -> bool:
        return any(p["message_id"] == "garbage-1" for p in await list_parked(backbone.amqp_url, "testsvc"))

    await eventually(parked)


async def hold_a_batch(backbone: Backbone) -> None:
    """A Held event keeps a batch running: while one runs, what arrives next waits and goes together
    (fewer than a full batch)."""
    gate.clear()
    holding.clear()
    await emit(backbone.pool, Held())

    async def held() -> bool:
        return len(holding) == 1

    await eventually(held)


async def release_as_one_batch(backbone: Backbone, waiting: int) -> None:
    """Opens the gate once `waiting` deliveries wait for a slot (the consumer's own list: nothing
    outside it tells that a message has reached it)."""

    async def all_waiting() -> bool:
        return len(backbone.consumer._waiting) == waiting

    await eventually(all_waiting)
    gate.set()


async def transactions_of(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> int:
    """How many transactions wrote these events' effects: now() is the transaction's start time."""
    return int(await pool.fetchval("SELECT count(DISTINCT at) FROM effects WHERE event_id = ANY($1)", ids))


async def test_a_failing_handler_in_a_batch_is_retried_alone_while_the_others_take_effect_once(
    backbone: Backbone,
) -> None:
    await hold_a_batch(backbone)
    pinged = [await emit(backbone.pool, Pinged(n=n)) for n in range(10)]
    flaky = await emit(backbone.pool, Flaky(fail_times=1))
    retried_before = backbone.consumer.outcomes["retried"]
    await release_as_one_batch(backbone, waiting=11)

    async def all_handled() -> bool:
        return set((await effect_counts(backbone.pool, [*pinged, flaky])).values()) == {1}

    await eventually(all_handled)
    await asyncio.sleep(0.5)  # room for any second effect to show up
    counts = await effect_counts(backbone.pool, [*pinged, flaky])
    assert counts == dict.fromkeys([*pinged, flaky], 1)
    assert failures[flaky] == 1
    assert backbone.consumer.outcomes["retried"] - retried_before == 1
    assert await transactions_of(backbone.pool, pinged) == 1  # the others committed as one batch


async def test_an_event_delivered_twice_into_one_batch_takes_effect_once(backbone: Backbone) -> None:
    await hold_a_batch(backbone)
    twice = Envelope(type=Pinged.type, version=Pinged.version, school_id=None, payload={"n": 1})
    channel = await backbone.publisher.channel()
    for _ in range(2):  # the very same message twice, as a redelivery racing the first copy would be
        await channel.default_exchange.publish(
            to_message(twice.model_dump(mode="json"), twice.event_id), routing_key="testsvc"
        )
    others = [await emit(backbone.pool, Pinged(n=n)) for n in range(5)]
    duplicates_before = backbone.consumer.outcomes["duplicate"]
    await release_as_one_batch(backbone, waiting=7)

    async def all_handled() -> bool:
        counts = await effect_counts(backbone.pool, [twice.event_id, *others])
        return len(counts) == 6 and backbone.consumer.outcomes["duplicate"] > duplicates_before

    await eventually(all_handled)
    await asyncio.sleep(0.5)
    counts = await effect_counts(backbone.pool, [twice.event_id, *others])
    assert counts == dict.fromkeys([twice.event_id, *others], 1)
    assert backbone.consumer.outcomes["duplicate"] - duplicates_before == 1
    await channel.close()


async def test_a_handler_that_breaks_the_batch_sends_only_its_own_event_to_retry(backbone: Backbone) -> None:
    await hold_a_batch(backbone)
    pinged = [await emit(backbone.pool, Pinged(n=n)) for n in range(5)]
    severing = await emit(backbone.pool, Severing(sever_times=2))  # the batch, then on its own
    retried_before = backbone.consumer.outcomes["retried"]
    await release_as_one_batch(backbone, waiting=6)

    async def all_handled() -> bool:
        return set((await effect_counts(backbone.pool, [*pinged, severing])).values()) == {1}

    await eventually(all_handled)
    await asyncio.sleep(0.5)
    assert await effect_counts(backbone.pool, [*pinged, severing]) == dict.fromkeys([*pinged, severing], 1)
    assert failures[severing] == 2
    assert backbone.consumer.outcomes["retried"] - retried_before == 1


async def test_a_batch_acked_while_an_older_message_is_pending_leaves_that_message_unacked(
    backbone: Backbone, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.consumer")
    await hold_a_batch(backbone)
    [older] = holding
    newer = [await emit(backbone.pool, Pinged(n=n)) for n in range(32)]  # a full batch runs beside it

    async def newer_handled() -> bool:
        return len(await effect_counts(backbone.pool, newer)) == 32

    await eventually(newer_handled)
    await asyncio.sleep(0.5)  # the newer batch's acks are out
    await close_all_broker_connections(backbone.amqp_url)
    gate.set()  # the older message commits now; its ack is lost with the channel

    async def older_came_back() -> bool:
        return any(
            r.msg == "event already handled" and getattr(r, "event_id", None) == str(older)
            for r in caplog.records
            if r.name == "shared.consumer"
        )

    # Only an unacked message is delivered again: a `multiple` ack of the newer batch would have
    # acked the older one too, and a crash before its commit would have lost it.
    await eventually(older_came_back)
    assert set((await effect_counts(backbone.pool, newer)).values()) == {1}
