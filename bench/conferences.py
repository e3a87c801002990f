"""Conference booking under a rush: 500 families booking the 300 slots of one schedule at once through
posts' HTTP API, beside raw asyncpg doing the same conditional insert in the same run.

A fresh database gets posts' migrations, a school (Europe/Amsterdam), one group with a teacher and
500 families with one child each (as posts' event handlers write them). ``python -m posts`` runs as
its own process (middlewares, token check, the booking handler: access, window, slot, the INSERT ...
ON CONFLICT DO NOTHING under the unique constraints, SlotBooked in the outbox, relayed to RabbitMQ
into a queue bound as the notifier binds one). To say where the time goes, a third figure runs the
statements the handler sends (posts.conferences.store and shared.outbox.publish), without HTTP, on a
pool of the same size.
The teacher makes a schedule of 300 five-minute slots through the API.

Each round, every family sends its booking at once (family i aims at slot i mod 300: 300 bookings,
200 refusals with 409), from an aiohttp client in this process with at most ``--connections`` open
connections. Raw: the same 500 conditional INSERTs (posts.conferences.store.book's SQL) from 500 tasks
on an asyncpg pool of posts' size (10), nothing else. Bookings are deleted between rounds. The figures
are medians of the rounds; the ratio is the median of each round's own ours/raw.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts \\
        .venv/bin/python bench/conferences.py [--families 500] [--slots 300] [--rounds 5]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
POOL_SIZE = 10  # posts' default db_pool_size

# posts.conferences.store.book's statement, with the ids it takes.
BOOK = """INSERT INTO conference_bookings (booking_id, schedule_id, slot_id, child_id, group_id, booked_by)
          VALUES (gen_random_uuid(), $1, $2, $3, $4, $5)
          ON CONFLICT DO NOTHING RETURNING booking_id"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], wall: float, booked: int) -> dict[str, float]:
    return {
        "bookings_per_s": booked / wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "wall_ms": wall * 1000,
        "booked": booked,
    }


async def seed(
    conn: asyncpg.Connection, families: int
) -> tuple[uuid.UUID, uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]]:
    """A school, a group with a teacher and ``families`` guardians with one child each."""
    school, group, teacher = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    parents = [(uuid.uuid4(), uuid.uuid4()) for _ in range(families)]
    await conn.execute(
        """INSERT INTO schools (school_id, time_zone, max_posts_per_day, min_posts_per_week, revision)
           VALUES ($1, 'Europe/Amsterdam', 1, 1, 1)""",
        school,
    )
    await conn.execute(
        "INSERT INTO groups (group_id, school_id, name, school_year, revision) VALUES ($1, $2, 'Groep 8', '2026-2027', 1)",
        group,
        school,
    )
    await conn.execute(
        "INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, 'teacher', true, 1)",
        group,
        teacher,
    )
    await conn.executemany(
        """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
           VALUES ($1, $2, 'guardian', true, 1, ARRAY[$3::uuid])""",
        [(group, p, c) for p, c in parents],
    )
    await conn.executemany(
        "INSERT INTO children (child_id, school_id, given_name, family_name, revision) VALUES ($1, $2, $3, 'Jansen', 1)",
        [(c, school, f"Kind {i}") for i, (_, c) in enumerate(parents)],
    )
    await conn.execute("ANALYZE")
    return group, teacher, parents


def schedule_body(group: uuid.UUID, slots: int) -> dict[str, Any]:
    """``slots`` five-minute slots, 60 a day (13:00-18:00) on consecutive days two weeks ahead."""
    now = datetime.now(UTC)
    first = (now + timedelta(days=14)).date()
    days = []
    left = slots
    for n in range(0, (slots + 59) // 60):
        take = min(60, left)
        end = 13 * 60 + 5 * take
        days.append(
            {
                "date": (first + timedelta(days=n)).isoformat(),
                "ranges": [{"start": "13:00", "end": f"{end // 60:02d}:{end % 60:02d}"}],
            }
        )
        left -= take
    return {
        "group_ids": [str(group)],
        "title": "Tienminutengesprekken",
        "days": days,
        "slot_minutes": 5,
        "opens_at": (now - timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(days=7)).isoformat(),
        "change_deadline": (now + timedelta(days=7)).isoformat(),
    }


async def ours_round(
    url: str, schedule_id: str, families: list[tuple[str, uuid.UUID]], slot_ids: list[str], connections: int
) -> dict[str, float]:
    latencies: list[float] = []
    booked = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, token: str, child: uuid.UUID) -> None:
            nonlocal booked
            body = {"slot_id": slot_ids[i % len(slot_ids)], "child_id": str(child)}
            started = time.perf_counter()
            async with session.post(
                f"{url}/conferences/{schedule_id}/bookings",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                await response.read()
                if response.status == 201:
                    booked += 1
                elif response.status != 409:
                    raise RuntimeError(f"unexpected {response.status}: {await response.text()}")
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one(i, t, c) for i, (t, c) in enumerate(families)))
        wall = time.perf_counter() - started
    return summary(latencies, wall, booked)


async def raw_round(
    pool: asyncpg.Pool,
    schedule_id: uuid.UUID,
    group: uuid.UUID,
    parents: list[tuple[uuid.UUID, uuid.UUID]],
    slot_ids: list[uuid.UUID],
) -> dict[str, float]:
    latencies: list[float] = []
    booked = 0

    async def one(i: int, parent: uuid.UUID, child: uuid.UUID) -> None:
        nonlocal booked
        started = time.perf_counter()
        async with pool.acquire() as conn:
            if await conn.fetchval(BOOK, schedule_id, slot_ids[i % len(slot_ids)], child, group, parent):
                booked += 1
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, p, c) for i, (p, c) in enumerate(parents)))
    wall = time.perf_counter() - started
    return summary(latencies, wall, booked)


async def bind_events_queue(amqp_url: str) -> None:
    """A queue for posts' events, as the notifier binds one: without it every SlotBooked would come
    back unroutable and the relay would retry it for the whole run."""
    from shared import bus

    connection = await bus.connect(amqp_url, "bench-conferences")
    try:
        channel = await connection.channel()
        exchange = await bus.declare_exchange(channel, "klaspost.events")
        queue = await channel.declare_queue("bench.posts-events", durable=True)
        await queue.bind(exchange, routing_key="posts.#")
    finally:
        await connection.close()


def start_posts(env: dict[str, str], log_path: Path) -> "subprocess.Popen[bytes]":
    """``python -m posts`` with its output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "posts"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def sql_round(
    pool: asyncpg.Pool,
    schedule_id: uuid.UUID,
    parents: list[tuple[uuid.UUID, uuid.UUID]],
    slot_ids: list[uuid.UUID],
) -> dict[str, float]:
    """The statements posts' booking handler sends, without HTTP: in one transaction the caller's
    rights with the child's group and the slot, the conditional insert, then SlotBooked into the outbox
    (insert + NOTIFY) or, when refused, which constraint said no."""
    from posts.conferences import store
    from shared.contracts import SlotBooked
    from shared.outbox import publish

    latencies: list[float] = []
    booked = 0

    async def one(i: int, parent: uuid.UUID, child: uuid.UUID) -> None:
        nonlocal booked
        slot = slot_ids[i % len(slot_ids)]
        started = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            row = await store.access(conn, schedule_id, parent, child, slot)
            assert row is not None
            done = await store.book(conn, schedule_id, slot, child, row["child_group"], parent)
            if done is None:
                await store.booking_of_child(conn, schedule_id, child)
            else:
                booked += 1
                event = SlotBooked(
                    booking_id=done["booking_id"],
                    schedule_id=schedule_id,
                    school_id=done["school_id"],
                    group_id=done["group_id"],
                    child_id=child,
                    child_name=done["given_name"],
                    title=done["title"],
                    starts_at=done["starts_at"],
                    ends_at=done["ends_at"],
                    guardian_ids=list(done["guardian_ids"]),
                    booked_by=parent,
                )
                await publish(conn, event, done["school_id"])
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, p, c) for i, (p, c) in enumerate(parents)))
    wall = time.perf_counter() - started
    return summary(latencies, wall, booked)


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


async def main(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "services/identity"), str(ROOT / "services/posts")]
    from identity.tokens import TokenSigner
    from shared.migrations import migrate
    from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
    from shared.tokens import Caller

    dsn = await create_database("bench_conferences")
    amqp_url = await create_vhost()
    process: subprocess.Popen[bytes] | None = None
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn, ROOT / "services/posts/posts/migrations")
        group, teacher, parents = await seed(conn, args.families)
        await bind_events_queue(amqp_url)
        signer = TokenSigner(Ed25519PrivateKey.generate(), issuer="klaspost-identity", ttl_seconds=7200)
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="bench-conferences-"))
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}:{ROOT / 'services/posts'}",
            "DATABASE_URL": dsn,
            "AMQP_URL": amqp_url,
            "JWKS_JSON": json.dumps(signer.jwks()),
            "HTTP_PORT": str(port),
            "DB_POOL_SIZE": str(POOL_SIZE),
        }
        process = start_posts(env, workdir / "posts.log")
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/conferences",
                json=schedule_body(group, args.slots),
                headers={"Authorization": f"Bearer {signer.issue(Caller(teacher))}"},
            ) as response,
        ):
            schedule = await response.json()
            assert response.status == 201, schedule
        schedule_id = uuid.UUID(schedule["schedule_id"])
        slot_ids = [s["slot_id"] for s in schedule["slots"]]
        assert len(slot_ids) == args.slots, len(slot_ids)
        families = [(signer.issue(Caller(p)), c) for p, c in parents]
        from shared.db import create_pool

        pool = await create_pool(dsn, POOL_SIZE)  # as posts makes its pool (JSON codecs)
        figures: dict[str, list[dict[str, float]]] = {"ours": [], "raw": [], "sql": []}
        ratios: list[float] = []

        async def clear() -> None:
            await conn.execute("DELETE FROM conference_bookings WHERE schedule_id = $1", schedule_id)

        await ours_round(url, str(schedule_id), families[:50], slot_ids, args.connections)  # warm up
        await clear()
        for _ in range(args.rounds):
            cpu = cpu_seconds(process.pid)
            ours = await ours_round(url, str(schedule_id), families, slot_ids, args.connections)
            ours["cpu_ms_per_request"] = (cpu_seconds(process.pid) - cpu) * 1000 / len(families)
            booked = await conn.fetch(
                "SELECT slot_id FROM conference_bookings WHERE schedule_id = $1", schedule_id
            )
            assert len(booked) == min(args.slots, args.families) == len({r["slot_id"] for r in booked})
            await clear()
            raw = await raw_round(pool, schedule_id, group, parents, [uuid.UUID(s) for s in slot_ids])
            await clear()
            sql = await sql_round(pool, schedule_id, parents, [uuid.UUID(s) for s in slot_ids])
            await clear()
            figures["ours"].append(ours)
            figures["raw"].append(raw)
            figures["sql"].append(sql)
            ratios.append(ours["bookings_per_s"] / raw["bookings_per_s"])
            print(
                f"ours {ours['bookings_per_s']:6.0f} bookings/s ({ours['requests_per_s']:5.0f} req/s) "
                f"p50 {ours['p50_ms']:6.1f} ms p99 {ours['p99_ms']:6.1f} ms, posts CPU {ours['cpu_ms_per_request']:.1f} ms/req | raw {raw['bookings_per_s']:6.0f} "
                f"bookings/s p50 {raw['p50_ms']:6.1f} ms p99 {raw['p99_ms']:6.1f} ms | handler's SQL {sql['bookings_per_s']:6.0f} "
                f"bookings/s | ratio {ratios[-1]:.2f}",
                flush=True,
            )
        print("medians:")
        cpu_ms = statistics.median(r["cpu_ms_per_request"] for r in figures["ours"])
        print(f"  posts' CPU per request (process time / requests): {cpu_ms:.2f} ms")
        for name in ("ours", "sql", "raw"):
            med = {k: statistics.median(r[k] for r in figures[name]) for k in figures[name][0]}
            print(
                f"  {name}: {med['bookings_per_s']:.0f} bookings/s, {med['requests_per_s']:.0f} requests/s, "
                f"p50 {med['p50_ms']:.1f} ms, p99 {med['p99_ms']:.1f} ms, all {args.families} in {med['wall_ms']:.0f} ms"
            )
        print(
            f"  ratio ours/raw (bookings/s): {statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        print(f"  SlotBooked events still unsent at the end: {unsent}")
        await pool.close()
        await conn.close()
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=20)
        await drop_database(dsn)
        await delete_vhost(amqp_url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--families", type=int, default=500)
    parser.add_argument("--slots", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=100, help="open HTTP connections at most")
    asyncio.run(main(parser.parse_args()))
