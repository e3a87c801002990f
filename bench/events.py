"""Event delivery next to the raw aio-pika ceilings, measured side by side in one run.

Ours: commit → outbox → relay (publisher confirms) → RabbitMQ quorum queue → Consumer with inbox, whose
handler does one small INSERT. Laid out as deployed: this process is the producing service (its request
transactions and its relay), a child process is the consuming service. Raw: aio-pika alone, persistent
1 KB messages through the same topic exchange into a quorum queue; our messages are ~1 KB too.

Everything happens on a fresh database and vhost, removed afterwards even on error. Each figure is measured
once per round, ours and raw interleaved so the machine's drift hits both alike; the table shows medians
and the median of each round's own ratio.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts:services/media:services/notifier \\
        .venv/bin/python bench/events.py [--events N] [--rounds R]
        [--relay-batch B] [--prefetch P] [--pool-size S] [--consumer-batch C] [--no-pool-reset]
"""

import argparse
import asyncio
import contextlib
import inspect
import json
import signal
import statistics
import sys
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
from shared.consumer import Consumer, Delivery, Handlers, InboxKey
from shared.db import create_pool
from shared.drain import Drainer
from shared.envelope import Envelope, Event, envelope, register
from shared.migrations import migrate
from shared.outbox import NOTIFY_CHANNEL, OutboxRelay, publish, to_message
from shared.settings import ServiceSettings
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database

EXCHANGE = "klaspost.events"
SERVICE = "benchsvc"
RAW_QUEUE = "bench.raw"
BODY_BYTES = 1024
RAW_BATCH = 100  # the ceiling's gather size
RAW_PREFETCH = 100
PRODUCERS = 8
PACED_RATE = 50.0
PACED_EVENTS = 150
PUBLISH_TIMEOUT = 10.0
SCHOOL = uuid.UUID("00000000-0000-4000-8000-000000000001")
EFFECTS_SQL = "CREATE TABLE effects (event_id uuid NOT NULL, sent double precision NOT NULL);\n"


def now() -> float:
    """CLOCK_MONOTONIC is one clock for every process on the machine: the consumer's child process too."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@register
class Benchmarked(Event):
    type = "bench.benchmarked"
    sent: float  # now(), taken just before the producer's commit
    padding: str


handlers = Handlers()


@handlers.on(Benchmarked)
async def benchmarked(conn: asyncpg.Connection, env: Envelope, event: Benchmarked) -> None:
    await conn.execute("INSERT INTO effects (event_id, sent) VALUES ($1, $2)", env.event_id, event.sent)


def padding_for(size: int) -> str:
    """Padding that makes our message body `size` bytes, like the raw one."""
    env = envelope(Benchmarked(sent=now(), padding=""), SCHOOL)
    return "x" * (size - len(to_message(env.model_dump(mode="json"), env.event_id).body))


PADDING = padding_for(BODY_BYTES)


async def no_reset(_conn: asyncpg.Connection) -> None:
    """The what-if of --no-pool-reset: asyncpg still rolls back an open transaction, but sends no reset query."""


@dataclass(frozen=True)
class Knobs:
    """Our public tuning knobs (settings.outbox_batch, .prefetch, .db_pool_size, the consumer's batch)
    and one what-if."""

    relay_batch: int = ServiceSettings.model_fields["outbox_batch"].default
    prefetch: int = 100
    pool_size: int = 10
    pool_reset: bool = True
    consumer_batch: int = inspect.signature(Consumer).parameters["max_batch"].default

    async def pool(self, dsn: str) -> asyncpg.Pool:
        return await create_pool(dsn, self.pool_size, **({} if self.pool_reset else {"reset": no_reset}))

    def args(self) -> list[str]:
        args = ["--relay-batch", str(self.relay_batch), "--prefetch", str(self.prefetch)]
        args += ["--pool-size", str(self.pool_size), "--consumer-batch", str(self.consumer_batch)]
        return args if self.pool_reset else [*args, "--no-pool-reset"]


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


@dataclass
class Handled:
    """What the consumer saw of `count` events: latency from commit to handler commit, first and last time."""

    latencies: list[float] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0

    def record(self, sent: float) -> None:
        self.last = now()
        self.first = self.first or self.last
        self.latencies.append(self.last - sent)

    def steady_rate(self) -> float:
        """From the first to the last event: start-up costs do not count."""
        return (len(self.latencies) - 1) / (self.last - self.first)


# The consuming service, in a child process: reads a count on stdin, answers "ready", then a JSON line
# with what it saw once that many events are handled.


class TimedConsumer(Consumer):
    """Our consumer, unchanged, that reports each first-time handling after its batch committed."""

    def __init__(self, pool: asyncpg.Pool, knobs: Knobs) -> None:
        super().__init__(
            SERVICE, pool, handlers, EXCHANGE, [1_000], knobs.prefetch, PUBLISH_TIMEOUT, knobs.consumer_batch
        )
        self.seen = Handled()
        self.left = 0
        self.done = asyncio.Event()

    def expect(self, count: int) -> None:
        self.seen, self.left, self.done = Handled(), count, asyncio.Event()
        if count == 0:
            self.done.set()

    async def _commit(self, batch: list[Delivery]) -> set[InboxKey]:
        new = await super()._commit(batch)
        for delivery in batch:
            if delivery.inbox_key in new and isinstance(delivery.event, Benchmarked):
                self.seen.record(delivery.event.sent)
                self.left -= 1
                if self.left == 0:
                    self.done.set()
        return new


async def consuming_service(dsn: str, amqp_url: str, first_count: int, knobs: Knobs) -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pool = await knobs.pool(dsn)
    connection = await bus.connect(amqp_url, "bench-consumer")
    consumer = TimedConsumer(pool, knobs)

    async def report() -> None:
        await consumer.done.wait()
        print(json.dumps(consumer.seen.__dict__), flush=True)

    consumer.expect(first_count)  # the backlog the relay left, consumed from the start
    reporting = asyncio.create_task(report())
    try:
        await consumer.start(connection)
        # Reading all along, so that the end of stdin (the parent is gone) ends this process at once.
        async for line in reader:
            await reporting
            consumer.expect(int(line))
            reporting = asyncio.create_task(report())
            print("ready", flush=True)
    finally:
        reporting.cancel()
        await connection.close()
        await pool.close()


class ConsumingService:
    def __init__(self, infra: "Infra") -> None:
        self.infra = infra
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, backlog: int) -> None:
        args = [
            "--consuming-service",
            self.infra.dsn,
            self.infra.amqp_url,
            str(backlog),
            *self.infra.knobs.args(),
        ]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,  # a line holds every latency of a measurement
        )

    async def _line(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        async with asyncio.timeout(self.infra.time_limit):
            line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the consuming service ended: {await self.process.wait()}")
        return line.decode()

    async def handled(self) -> Handled:
        """What the consumer saw of the count it was told to expect (the backlog at first)."""
        return Handled(**json.loads(await self._line()))

    async def expect(self, count: int) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"{count}\n".encode())
        await self.process.stdin.drain()
        if await self._line() != "ready\n":
            raise RuntimeError("the consuming service did not get ready")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# The producing service, and the raw client, in this process.


@dataclass
class Infra:
    dsn: str
    amqp_url: str
    pool: asyncpg.Pool
    exchange: AbstractExchange
    raw: AbstractConnection
    raw_exchange: AbstractExchange
    time_limit: float
    knobs: Knobs


async def paced(count: int, rate: float, send: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Starts `send` `rate` times a second on a fixed schedule, so that a slow one does not delay the rest."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(send()))
    await asyncio.gather(*tasks)


def raw_message(sent: float = 0.0) -> aio_pika.Message:
    return aio_pika.Message(
        f"{sent:.9f}".encode().ljust(BODY_BYTES), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )


async def raw_publish(infra: Infra, count: int, batch: int) -> tuple[float, float]:
    """Rate and CPU µs per message of publishing with confirms awaited `batch` at a time (1: one by one)."""
    started, cpu = time.perf_counter(), time.process_time()
    for offset in range(0, count, batch):
        await asyncio.gather(
            *(
                infra.raw_exchange.publish(raw_message(), routing_key=RAW_QUEUE, timeout=PUBLISH_TIMEOUT)
                for _ in range(min(batch, count - offset))
            )
        )
    return count / (time.perf_counter() - started), 1e6 * (time.process_time() - cpu) / count


async def raw_consume(
    infra: Infra, count: int, on_message: Callable[[AbstractIncomingMessage], None]
) -> None:
    """Consumes `count` messages from the raw queue, manual ack, on a channel of its own."""
    channel = await infra.raw.channel()
    await channel.set_qos(prefetch_count=RAW_PREFETCH)
    queue = await channel.get_queue(RAW_QUEUE)
    done = asyncio.Event()
    left = count
    failed: list[Exception] = []

    async def consume(message: AbstractIncomingMessage) -> None:
        nonlocal left
        try:
            on_message(message)
        except Exception as exc:
            failed.append(exc)  # aio-pika would only log it; end the measurement instead
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
    seen = Handled()
    await raw_consume(infra, count, lambda _m: seen.record(0.0))
    return seen.steady_rate()


async def raw_latency(infra: Infra, count: int) -> list[float]:
    """From just before publishing to the consumer's receipt, at PACED_RATE."""
    seen = Handled()

    async def send() -> None:
        await infra.raw_exchange.publish(raw_message(now()), routing_key=RAW_QUEUE, timeout=PUBLISH_TIMEOUT)

    consuming = asyncio.create_task(raw_consume(infra, count, lambda m: seen.record(float(m.body[:32]))))
    await asyncio.sleep(0.2)  # the consumer is attached
    await paced(count, PACED_RATE, send)
    await consuming
    return seen.latencies


async def emit(pool: asyncpg.Pool) -> None:
    """One request's transaction that publishes one event."""
    async with pool.acquire() as conn, conn.transaction():
        await publish(conn, Benchmarked(sent=now(), padding=PADDING), SCHOOL)


async def fill_outbox(pool: asyncpg.Pool, count: int) -> None:
    """`count` committed, unsent events (500 per transaction: only the relay is timed)."""
    for offset in range(0, count, 500):
        async with pool.acquire() as conn, conn.transaction():
            for _ in range(min(500, count - offset)):
                await publish(conn, Benchmarked(sent=now(), padding=PADDING), SCHOOL)


Drain = Callable[[], Awaitable[int]]


def relay_drainer(infra: Infra, wrap: Callable[[Drain], Drain] = lambda drain: drain) -> Drainer:
    """The relay as shared.app wires it, the drain wrapped for timing."""
    relay = OutboxRelay(infra.pool, infra.exchange, infra.knobs.relay_batch, PUBLISH_TIMEOUT)
    return Drainer("bench-outbox", infra.dsn, NOTIFY_CHANNEL, wrap(relay.drain), 5.0)


async def relay_rate(infra: Infra, count: int) -> tuple[float, float]:
    """Rate and CPU µs per event of the relay over a pre-filled outbox, from its first batch to the last
    one marked published."""
    await fill_outbox(infra.pool, count)
    first = last = 0.0
    cpu = 0.0
    sent = 0
    done = asyncio.Event()

    def timed(drain: Drain) -> Drain:
        async def run() -> int:
            nonlocal first, last, cpu, sent
            if not first:
                first, cpu = time.perf_counter(), time.process_time()
            n = await drain()
            last = time.perf_counter()
            sent += n
            if sent >= count:
                cpu = time.process_time() - cpu
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
    return count / (last - first), 1e6 * cpu / count


async def end_to_end(infra: Infra, consumer: ConsumingService, count: int) -> tuple[float, Handled, float]:
    """PRODUCERS concurrent request transactions of one event each: (commit rate, handled, started)."""
    await consumer.expect(count)
    left = count

    async def producer() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await emit(infra.pool)

    started = now()
    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    committed = now()
    return count / (committed - started), await consumer.handled(), started


async def ours_latency(infra: Infra, consumer: ConsumingService, count: int) -> list[float]:
    await consumer.expect(count)
    await paced(count, PACED_RATE, lambda: emit(infra.pool))
    return (await consumer.handled()).latencies


@dataclass
class Figures:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def paired_ratio(self, ours: str, raw: str) -> float:
        """The median of each round's ratio: drift between rounds cancels out."""
        return statistics.median(o / r for o, r in zip(self.values[ours], self.values[raw], strict=True))


async def one_round(infra: Infra, count: int, figures: Figures, relay_first: bool) -> None:
    async with infra.pool.acquire() as conn:
        await conn.execute("TRUNCATE outbox, inbox, effects")
    rate, _ = await raw_publish(infra, count, 1)
    figures.add("raw publish one by one", rate)
    for contender in ("ours", "raw") if relay_first else ("raw", "ours"):
        rate, cpu = await (
            relay_rate(infra, count) if contender == "ours" else raw_publish(infra, count, RAW_BATCH)
        )
        figures.add(f"{contender} publish batched", rate)
        figures.add(f"{contender} publish cpu", cpu)
    figures.add("raw consume", await raw_consume_rate(infra, 2 * count))

    consumer = ConsumingService(infra)
    await consumer.start(backlog=count)
    try:
        figures.add("ours consume", (await consumer.handled()).steady_rate())
        drainer = relay_drainer(infra)
        await drainer.start()
        try:
            commits, handled, started = await end_to_end(infra, consumer, count)
            figures.add("ours commits", commits)
            figures.add("ours end to end", count / (handled.last - started))
            figures.add("ours end to end p50", percentile(handled.latencies, 50))
            figures.add("ours end to end p99", percentile(handled.latencies, 99))
            latencies = await ours_latency(infra, consumer, PACED_EVENTS)
            figures.add("ours paced p50", percentile(latencies, 50))
            figures.add("ours paced p99", percentile(latencies, 99))
        finally:
            await drainer.stop()
    finally:
        await consumer.stop()

    latencies = await raw_latency(infra, PACED_EVENTS)
    figures.add("raw paced p50", percentile(latencies, 50))
    figures.add("raw paced p99", percentile(latencies, 99))


def rows(knobs: Knobs) -> list[tuple[str, str | None, str | None, str]]:
    """figure, ours, raw (the ratio is ours / raw), unit"""
    return [
        ("publish, persistent 1 KB, confirms one by one", None, "raw publish one by one", "msg/s"),
        (
            f"publish, confirms batched: relay (batch {knobs.relay_batch}) / gather of {RAW_BATCH}",
            "ours publish batched",
            "raw publish batched",
            "msg/s",
        ),
        ("  the same, CPU of this process per message", "ours publish cpu", "raw publish cpu", "µs"),
        (
            f"consume a backlog, manual ack, prefetch {knobs.prefetch} / {RAW_PREFETCH}; ours: batches ≤ {knobs.consumer_batch}, inbox + 1 INSERT each",
            "ours consume",
            "raw consume",
            "msg/s",
        ),
        (
            f"end to end, {PRODUCERS} producers, 1 event per transaction: committed",
            "ours commits",
            None,
            "ev/s",
        ),
        ("end to end: handled (raw: the consume ceiling)", "ours end to end", "raw consume", "ev/s"),
        ("end to end latency p50, commit → handler committed", "ours end to end p50", None, "ms"),
        ("end to end latency p99", "ours end to end p99", None, "ms"),
        (
            f"latency p50 at {PACED_RATE:.0f}/s (raw: publish → consume)",
            "ours paced p50",
            "raw paced p50",
            "ms",
        ),
        (f"latency p99 at {PACED_RATE:.0f}/s", "ours paced p99", "raw paced p99", "ms"),
    ]


def show(value: float, unit: str) -> str:
    return f"{value * 1000:.1f}" if unit == "ms" else f"{value:,.0f}"


def table(figures: Figures, knobs: Knobs) -> str:
    width = max(len(f"{name} ({unit})") for name, _, _, unit in rows(knobs))
    lines = [
        f"| {'figure':<{width}} | {'ours':>8} | {'raw':>8} | ratio |",
        f"| {'-' * width} | {'-' * 7}: | {'-' * 7}: | ----: |",
    ]
    for name, ours, raw, unit in rows(knobs):
        cells = [show(figures.median(key), unit) if key else "" for key in (ours, raw)]
        ratio = f"{figures.paired_ratio(ours, raw):.2f}" if ours and raw else ""
        lines.append(f"| {f'{name} ({unit})':<{width}} | {cells[0]:>8} | {cells[1]:>8} | {ratio:>5} |")
    return "\n".join(lines)


async def connect(stack: contextlib.AsyncExitStack, time_limit: float, knobs: Knobs) -> Infra:
    """A fresh database and vhost with our tables and queues; `stack` removes them again."""
    dsn = await create_database("bench_events")
    stack.push_async_callback(drop_database, dsn)
    amqp_url = await create_vhost()
    stack.push_async_callback(delete_vhost, amqp_url)
    pool = await knobs.pool(dsn)
    stack.push_async_callback(pool.close)
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
    return Infra(dsn, amqp_url, pool, exchange, raw, raw_exchange, time_limit, knobs)


async def run(count: int, rounds: int, knobs: Knobs) -> Figures:
    figures = Figures()
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM, like Ctrl-C, cancels the run, so that the database, vhost and child process go too.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        infra = await connect(stack, time_limit=60 + count / 100, knobs=knobs)
        print(f"warm-up, then {rounds} rounds of {count} events of {BODY_BYTES} B", flush=True)
        await one_round(infra, min(count, 500), Figures(), relay_first=True)
        for n in range(rounds):
            await one_round(infra, count, figures, relay_first=n % 2 == 1)
            done = ", ".join(f"{name} {show(v[-1], unit_of(name))}" for name, v in figures.values.items())
            print(f"round {n + 1}: {done}", flush=True)
    return figures


def unit_of(name: str) -> str:
    return "ms" if name.endswith(("p50", "p99")) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description="Event delivery next to the raw aio-pika ceilings.")
    parser.add_argument("--events", type=int, default=5_000, help="events per measurement (500-50000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the table shows medians (1-9)")
    parser.add_argument("--relay-batch", type=int, default=Knobs.relay_batch, help="OutboxRelay batch")
    parser.add_argument("--prefetch", type=int, default=Knobs.prefetch, help="our consumer's prefetch")
    parser.add_argument(
        "--pool-size", type=int, default=Knobs.pool_size, help="asyncpg pool size, each service"
    )
    parser.add_argument(
        "--no-pool-reset", action="store_true", help="what-if: asyncpg pools without the reset query"
    )
    parser.add_argument(
        "--consumer-batch", type=int, default=Knobs.consumer_batch, help="our consumer's max_batch"
    )
    parser.add_argument("--consuming-service", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    knobs = Knobs(
        args.relay_batch, args.prefetch, args.pool_size, not args.no_pool_reset, args.consumer_batch
    )
    if args.consuming_service:
        dsn, amqp_url, backlog = args.consuming_service
        asyncio.run(consuming_service(dsn, amqp_url, int(backlog), knobs))
        return
    count = min(max(args.events, 500), 50_000)
    rounds = min(max(args.rounds, 1), 9)
    started = time.perf_counter()
    try:
        figures = asyncio.run(run(count, rounds, knobs))
    except (asyncio.CancelledError, KeyboardInterrupt):
        sys.exit("stopped; the database and vhost are removed")
    ratio = figures.paired_ratio("ours publish batched", "raw publish batched")
    print(f"\n{table(figures, knobs)}\n")
    print(f"relay / raw batched publish: {ratio:.2f} (target 0.70: {'met' if ratio >= 0.70 else 'missed'})")
    print(f"{knobs}; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
