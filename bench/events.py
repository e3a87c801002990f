"""Event delivery next to the raw aio-pika ceilings, measured side by side in one run.

Ours: commit → outbox → relay (publisher confirms) → RabbitMQ quorum queue → Consumer with inbox, whose
handler does one small INSERT. Raw: aio-pika alone, persistent 1 KB messages through the same topic
exchange into a quorum queue. Our messages are ~1 KB too. Everything runs in this one process and event
loop, on a fresh database and vhost that are removed afterwards, even on error. Each figure is measured
in every round, ours and raw interleaved so the machine's drift hits both alike; the table shows medians.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts:services/media:services/notifier \\
        .venv/bin/python bench/events.py [--events N] [--rounds R]
"""

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractConnection, AbstractExchange, AbstractIncomingMessage

from shared import bus
from shared.consumer import Consumer, Handler, Handlers
from shared.db import create_pool
from shared.drain import Drainer
from shared.envelope import Envelope, Event, envelope, register
from shared.migrations import migrate
from shared.outbox import NOTIFY_CHANNEL, OutboxRelay, publish, to_message
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database

EXCHANGE = "klaspost.events"
SERVICE = "benchsvc"
RAW_QUEUE = "bench.raw"
BODY_BYTES = 1024
RAW_BATCH = 100  # the ceiling's gather size
RELAY_BATCH = 200  # settings.outbox_batch
PREFETCH = 100
POOL_SIZE = 10
PRODUCERS = 8
PACED_RATE = 50.0
PACED_EVENTS = 150
PUBLISH_TIMEOUT = 10.0
SCHOOL = uuid.UUID("00000000-0000-4000-8000-000000000001")
EFFECTS_SQL = "CREATE TABLE effects (event_id uuid NOT NULL, sent double precision NOT NULL);\n"


@register
class Benchmarked(Event):
    type = "bench.benchmarked"
    sent: float  # time.perf_counter() in this process, taken just before the producer's commit
    padding: str


handlers = Handlers()


@handlers.on(Benchmarked)
async def benchmarked(conn: asyncpg.Connection, env: Envelope, event: Benchmarked) -> None:
    await conn.execute("INSERT INTO effects (event_id, sent) VALUES ($1, $2)", env.event_id, event.sent)


def padding_for(size: int) -> str:
    """Padding that makes our message body `size` bytes, like the raw one."""
    env = envelope(Benchmarked(sent=time.perf_counter(), padding=""), SCHOOL)
    return "x" * (size - len(to_message(env.model_dump(mode="json"), env.event_id).body))


PADDING = padding_for(BODY_BYTES)


class Probe:
    """Counts handled events and collects their latencies until the expected number is reached."""

    def __init__(self) -> None:
        self.expect(0)

    def expect(self, count: int) -> None:
        self.left = count
        self.latencies: list[float] = []
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    def record(self, sent: float) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.latencies.append(now - sent)
        self.left -= 1
        if self.left <= 0:
            self.done.set()

    def steady_rate(self) -> float:
        """Rate from the first to the last event: what start-up costs does not count."""
        return (len(self.latencies) - 1) / (self.last - self.first)


class TimedConsumer(Consumer):
    """Our consumer, unchanged, that reports each first-time handling after its transaction committed."""

    def __init__(self, pool: asyncpg.Pool, probe: Probe) -> None:
        super().__init__(SERVICE, pool, handlers, EXCHANGE, [1_000], PREFETCH, PUBLISH_TIMEOUT)
        self.probe = probe

    async def _handle(self, env: Envelope, handler: Handler[Any], event: Event) -> bool:
        handled = await super()._handle(env, handler, event)
        if handled and isinstance(event, Benchmarked):
            self.probe.record(event.sent)
        return handled


@dataclass
class Infra:
    dsn: str
    amqp_url: str
    pool: asyncpg.Pool  # the producing service's: its requests and its relay
    consumer_pool: asyncpg.Pool  # the consuming service's
    publisher: AbstractConnection
    exchange: AbstractExchange
    raw: AbstractConnection
    raw_exchange: AbstractExchange
    time_limit: float


@dataclass
class Figures:
    rates: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.rates.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


async def paced(count: int, rate: float, send: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Starts `send` `rate` times a second on a fixed schedule, so that a slow one does not delay the rest."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(send()))
    await asyncio.gather(*tasks)


# Raw aio-pika.


def raw_message(sent: float = 0.0) -> aio_pika.Message:
    return aio_pika.Message(
        f"{sent:.9f}".encode().ljust(BODY_BYTES), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )


async def raw_publish(infra: Infra, count: int, batch: int) -> float:
    """Publishing rate with confirms awaited `batch` at a time (1: one by one)."""
    started = time.perf_counter()
    for offset in range(0, count, batch):
        await asyncio.gather(
            *(
                infra.raw_exchange.publish(raw_message(), routing_key=RAW_QUEUE, timeout=PUBLISH_TIMEOUT)
                for _ in range(min(batch, count - offset))
            )
        )
    return count / (time.perf_counter() - started)


async def raw_consume(
    infra: Infra, count: int, on_message: Callable[[AbstractIncomingMessage], None]
) -> None:
    """Consumes `count` messages from the raw queue, manual ack, our prefetch, on a channel of its own."""
    channel = await infra.raw.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.get_queue(RAW_QUEUE)
    done = asyncio.Event()
    left = count
    failed: list[Exception] = []

    async def consume(message: AbstractIncomingMessage) -> None:
        nonlocal left
        try:
            on_message(message)
        except Exception as exc:
            failed.append(exc)  # aio-pika would only log it; stop the measurement instead
            done.set()
        await message.ack()
        left -= 1
        if left == 0:
            done.set()

    tag = await queue.consume(consume)
    try:
        async with asyncio.timeout(infra.time_limit):
            await done.wait()
    finally:
        await queue.cancel(tag)
        await channel.close()
    if failed:
        raise failed[0]


async def raw_consume_rate(infra: Infra, count: int) -> float:
    """The backlog the raw publishers left, drained; the rate from the first to the last message."""
    seen: list[float] = []
    await raw_consume(infra, count, lambda _m: seen.append(time.perf_counter()))
    return (len(seen) - 1) / (seen[-1] - seen[0])


async def raw_latency(infra: Infra, count: int) -> list[float]:
    latencies: list[float] = []

    async def send() -> None:
        await infra.raw_exchange.publish(
            raw_message(time.perf_counter()), routing_key=RAW_QUEUE, timeout=PUBLISH_TIMEOUT
        )

    def received(message: AbstractIncomingMessage) -> None:
        latencies.append(time.perf_counter() - float(message.body[:32]))

    consuming = asyncio.create_task(raw_consume(infra, count, received))
    await asyncio.sleep(0.2)  # the consumer is attached
    await paced(count, PACED_RATE, send)
    await consuming
    return latencies


# Ours: shared.outbox, shared.drain and shared.consumer as the services wire them.


async def emit(pool: asyncpg.Pool) -> None:
    """One request's transaction that publishes one event."""
    async with pool.acquire() as conn, conn.transaction():
        await publish(conn, Benchmarked(sent=time.perf_counter(), padding=PADDING), SCHOOL)


async def fill_outbox(pool: asyncpg.Pool, count: int) -> None:
    """`count` committed, unsent events (500 per transaction: only the relay is timed)."""
    for offset in range(0, count, 500):
        async with pool.acquire() as conn, conn.transaction():
            for _ in range(min(500, count - offset)):
                await publish(conn, Benchmarked(sent=time.perf_counter(), padding=PADDING), SCHOOL)


def relay_drainer(
    infra: Infra, wrap: Callable[[Callable[[], Awaitable[int]]], Callable[[], Awaitable[int]]]
) -> Drainer:
    relay = OutboxRelay(infra.pool, infra.exchange, RELAY_BATCH, PUBLISH_TIMEOUT)
    return Drainer("bench-outbox", infra.dsn, NOTIFY_CHANNEL, wrap(relay.drain), 5.0)


async def relay_rate(infra: Infra, count: int) -> float:
    """The relay's rate over a pre-filled outbox, from its first batch to the last one marked published."""
    await fill_outbox(infra.pool, count)
    first = last = 0.0
    sent = 0
    done = asyncio.Event()

    def timed(drain: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            nonlocal first, last, sent
            first = first or time.perf_counter()
            n = await drain()
            last = time.perf_counter()
            sent += n
            if sent >= count:
                done.set()
            return n

        return run

    drainer = relay_drainer(infra, timed)
    await drainer.start()
    try:
        async with asyncio.timeout(infra.time_limit):
            await done.wait()
    finally:
        await drainer.stop()
    return count / (last - first)


async def wait(infra: Infra, probe: Probe) -> None:
    async with asyncio.timeout(infra.time_limit):
        await probe.done.wait()


async def end_to_end(infra: Infra, probe: Probe, count: int) -> tuple[float, float]:
    """PRODUCERS concurrent request transactions of one event each; returns (commit rate, handled rate)."""
    probe.expect(count)
    left = count

    async def producer() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await emit(infra.pool)

    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    committed = time.perf_counter()
    await wait(infra, probe)
    return count / (committed - started), count / (probe.last - started)


async def ours_latency(infra: Infra, probe: Probe, count: int) -> list[float]:
    probe.expect(count)
    await paced(count, PACED_RATE, lambda: emit(infra.pool))
    await wait(infra, probe)
    return probe.latencies


async def one_round(infra: Infra, count: int, figures: Figures) -> None:
    async with infra.pool.acquire() as conn:
        await conn.execute("TRUNCATE outbox, inbox, effects")
    figures.add("raw publish 1", await raw_publish(infra, count, 1))
    figures.add("raw publish batched", await raw_publish(infra, count, RAW_BATCH))
    figures.add("ours relay", await relay_rate(infra, count))
    figures.add("raw consume", await raw_consume_rate(infra, 2 * count))

    probe = Probe()
    probe.expect(count)
    connection = await bus.connect(infra.amqp_url, "bench-consumer")
    try:
        await TimedConsumer(infra.consumer_pool, probe).start(connection)
        await wait(infra, probe)  # the backlog the relay left
        figures.add("ours consume", probe.steady_rate())
        drainer = relay_drainer(infra, lambda drain: drain)
        await drainer.start()
        try:
            committed, handled = await end_to_end(infra, probe, count)
            figures.add("ours commit", committed)
            figures.add("ours e2e", handled)
            figures.add("ours e2e p50", percentile(probe.latencies, 50))
            figures.add("ours e2e p99", percentile(probe.latencies, 99))
            latencies = await ours_latency(infra, probe, PACED_EVENTS)
            figures.add("ours paced p50", percentile(latencies, 50))
            figures.add("ours paced p99", percentile(latencies, 99))
        finally:
            await drainer.stop()
    finally:
        await connection.close()

    latencies = await raw_latency(infra, PACED_EVENTS)
    figures.add("raw paced p50", percentile(latencies, 50))
    figures.add("raw paced p99", percentile(latencies, 99))


ROWS = [
    # figure, ours, raw, unit
    ("publish, persistent 1 KB, confirms one by one", None, "raw publish 1", "msg/s"),
    (
        f"publish, confirms batched (relay batch {RELAY_BATCH} / gather {RAW_BATCH})",
        "ours relay",
        "raw publish batched",
        "msg/s",
    ),
    (
        f"consume from backlog, manual ack, prefetch {PREFETCH} (ours: inbox + INSERT)",
        "ours consume",
        "raw consume",
        "msg/s",
    ),
    (f"end to end, {PRODUCERS} producers, 1 event per transaction: commits", "ours commit", None, "ev/s"),
    ("end to end: handled (raw: consume ceiling)", "ours e2e", "raw consume", "ev/s"),
    ("end to end latency p50, commit → handler commit", "ours e2e p50", None, "ms"),
    ("end to end latency p99", "ours e2e p99", None, "ms"),
    (f"latency p50 at {PACED_RATE:.0f}/s (raw: publish → consume)", "ours paced p50", "raw paced p50", "ms"),
    (f"latency p99 at {PACED_RATE:.0f}/s", "ours paced p99", "raw paced p99", "ms"),
]


def show(value: float, unit: str) -> str:
    return f"{value * 1000:.1f}" if unit == "ms" else f"{value:,.0f}"


def table(figures: Figures) -> str:
    lines = [
        f"| {'figure':<78} | {'ours':>8} | {'raw':>8} | {'ratio':>5} |",
        f"| {'-' * 78} | {'-' * 7}: | {'-' * 7}: | {'-' * 4}: |",
    ]
    for name, ours, raw, unit in ROWS:
        mine = figures.median(ours) if ours else None
        theirs = figures.median(raw) if raw else None
        ratio = f"{mine / theirs:.2f}" if mine is not None and theirs is not None else ""
        lines.append(
            f"| {name + f' ({unit})':<78} | {show(mine, unit) if mine is not None else '':>8} "
            f"| {show(theirs, unit) if theirs is not None else '':>8} | {ratio:>5} |"
        )
    return "\n".join(lines)


async def connect(stack: contextlib.AsyncExitStack, time_limit: float) -> Infra:
    """A fresh database and vhost with our tables and queues; `stack` removes them again."""
    dsn = await create_database("bench_events")
    stack.push_async_callback(drop_database, dsn)
    amqp_url = await create_vhost()
    stack.push_async_callback(delete_vhost, amqp_url)
    pool = await create_pool(dsn, POOL_SIZE)
    stack.push_async_callback(pool.close)
    consumer_pool = await create_pool(dsn, POOL_SIZE)
    stack.push_async_callback(consumer_pool.close)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "001_effects.sql").write_text(EFFECTS_SQL)
        async with pool.acquire() as conn:
            await migrate(conn, Path(folder))

    publisher = await bus.connect(amqp_url, "bench-publisher")
    stack.push_async_callback(publisher.close)
    exchange = await bus.declare_exchange(await bus.publisher_channel(publisher), EXCHANGE)
    # Our queue exists before the first event, as a deployed consumer's would.
    channel = await publisher.channel()
    await bus.declare_service_queues(
        channel, exchange, bus.QueueNames(SERVICE), sorted(handlers.by_type), [1_000]
    )
    await channel.close()

    raw = await aio_pika.connect(amqp_url)
    stack.push_async_callback(raw.close)
    raw_channel = await raw.channel(publisher_confirms=True)
    raw_exchange = await bus.declare_exchange(raw_channel, EXCHANGE)
    queue = await raw_channel.declare_queue(RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await queue.bind(raw_exchange, routing_key=RAW_QUEUE)
    return Infra(dsn, amqp_url, pool, consumer_pool, publisher, exchange, raw, raw_exchange, time_limit)


async def run(count: int, rounds: int) -> Figures:
    figures = Figures()
    async with contextlib.AsyncExitStack() as stack:
        infra = await connect(stack, time_limit=60 + count / 100)
        print(f"warm-up, then {rounds} rounds of {count} events of {BODY_BYTES} B", flush=True)
        await one_round(infra, min(count, 500), Figures())
        for n in range(rounds):
            await one_round(infra, count, figures)
            done = ", ".join(f"{name} {show(v[-1], unit_of(name))}" for name, v in figures.rates.items())
            print(f"round {n + 1}: {done}", flush=True)
    return figures


def unit_of(name: str) -> str:
    return "ms" if name.endswith(("p50", "p99")) else "/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5_000, help="events per measurement (500-50000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, medians are shown (1-9)")
    args = parser.parse_args()
    count = min(max(args.events, 500), 50_000)
    rounds = min(max(args.rounds, 1), 9)
    started = time.perf_counter()
    figures = asyncio.run(run(count, rounds))
    print()
    print(table(figures))
    print(
        f"\nrelay / raw batched publish: {figures.median('ours relay') / figures.median('raw publish batched'):.2f} "
        f"(target 0.70); {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
