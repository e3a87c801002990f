"""Posting under the posting policy (seed rule 5): 20 teachers of one group post at the same moment —
exactly one may succeed — and how many posts a second one replica accepts, beside raw asyncpg doing
the same transaction (the policy's conditional upsert, the post row, the outbox row) in the same run.

The posts service runs alone in a process of its own, as deployed (``shared.service.run``), on a
fresh database and RabbitMQ vhost, logging at INFO to /dev/null. Its access tokens are signed here
with a key whose public half the service gets as JWKS_JSON. Setup goes straight into posts' tables
(groups, teacher memberships, school with its time zone): no identity needed. A queue of the bench
takes every event posts publishes, as the notifier and media would.

Measured:
- race: ROUNDS rounds, each 20 concurrent POSTs by 20 teachers to one fresh group; each round must
  give exactly one 201 and nineteen 409s, and one post row, one day count and one PostPublished.
- throughput: POSTS posts, each to a group of its own (all accepted), CONCURRENCY at once over HTTP;
  then raw: the same number of transactions from this process on a pool of the service's size.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts:services/media:services/notifier \\
        .venv/bin/python bench/posting.py [--posts 2000] [--concurrency 16] [--rounds 20]
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench.deployment import stop_process, until_ready
from identity.tokens import TokenSigner, generate_signing_key_pem, private_key_from_pem
from posts.publishing.domain import local_day
from shared.db import create_pool
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
from shared.tokens import Caller

ROOT = Path(__file__).resolve().parent.parent
PYTHONPATH = os.pathsep.join(
    str(ROOT / p) for p in (".", "services/identity", "services/posts", "services/media", "services/notifier")
)
SERVICE_MAIN = """
import json, os
from shared.service import run
from posts.app import spec
from posts.settings import Settings
run(spec(), Settings.model_validate(json.loads(os.environ["BENCH_SETTINGS"])))
"""
ZONE = "Europe/Amsterdam"
POOL_SIZE = 10  # the service's default db_pool_size


@dataclass
class Posts:
    url: str
    pool: asyncpg.Pool
    signer: TokenSigner
    school_id: uuid.UUID


@contextlib.asynccontextmanager
async def deployed() -> AsyncIterator[Posts]:
    async with contextlib.AsyncExitStack() as stack:
        amqp_url = await create_vhost()
        stack.push_async_callback(delete_vhost, amqp_url)
        database = await create_database("bench_posts")
        stack.push_async_callback(drop_database, database)
        pem = generate_signing_key_pem()
        signer = TokenSigner(private_key_from_pem(pem), issuer="klaspost-identity", ttl_seconds=3600)
        port = free_port()
        settings = {
            "http_port": port,
            "database_url": database,
            "amqp_url": amqp_url,
            "jwks_json": json.dumps(signer.jwks()),
            "db_pool_size": POOL_SIZE,
        }
        env = {**os.environ, "PYTHONPATH": PYTHONPATH, "BENCH_SETTINGS": json.dumps(settings)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVICE_MAIN,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        stack.push_async_callback(stop_process, process)
        if not await until_ready(f"http://127.0.0.1:{port}/readyz", process):
            raise RuntimeError("posts exited")
        broker = await aio_pika.connect_robust(amqp_url)
        stack.push_async_callback(broker.close)
        channel = await broker.channel()
        exchange = await channel.declare_exchange(
            "klaspost.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        sink = await channel.declare_queue("bench.posting.sink", durable=False, auto_delete=False)
        await sink.bind(exchange, "posts.#")
        pool = await create_pool(database, size=POOL_SIZE)
        stack.push_async_callback(pool.close)
        school_id = uuid.uuid4()
        await pool.execute(
            """INSERT INTO schools (school_id, time_zone, max_posts_per_day, min_posts_per_week, revision)
               VALUES ($1, $2, 1, 1, 1)""",
            school_id,
            ZONE,
        )
        yield Posts(f"http://127.0.0.1:{port}", pool, signer, school_id)


async def groups_with_teachers(posts: Posts, groups: int, teachers: int) -> list[tuple[uuid.UUID, list[str]]]:
    """New groups, each taught by ``teachers`` teachers; their access tokens."""
    made: list[tuple[uuid.UUID, list[str]]] = []
    rows_groups: list[tuple[Any, ...]] = []
    rows_members: list[tuple[Any, ...]] = []
    for _ in range(groups):
        group_id = uuid.uuid4()
        people = [uuid.uuid4() for _ in range(teachers)]
        rows_groups.append((group_id, posts.school_id, f"Groep {group_id.hex[:4]}", "2026-2027", 1))
        rows_members.extend((group_id, person, "teacher", True, 1) for person in people)
        made.append((group_id, [posts.signer.issue(Caller(person_id=p)) for p in people]))
    await posts.pool.executemany(
        "INSERT INTO groups (group_id, school_id, name, school_year, revision) VALUES ($1, $2, $3, $4, $5)",
        rows_groups,
    )
    await posts.pool.executemany(
        "INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, $3, $4, $5)",
        rows_members,
    )
    return made


def post_body(i: int) -> dict[str, Any]:
    return {"title": f"Bericht {i}", "body": "Morgen gym. Neem je gymschoenen mee.\n\nGroet, juf"}


async def race(posts: Posts, http: aiohttp.ClientSession, rounds: int) -> list[float]:
    """Each round 20 teachers of a fresh group at once; asserts exactly one accepted. Round times (s)."""
    times = []
    for group_id, tokens in await groups_with_teachers(posts, rounds, 20):

        async def attempt(i: int, token: str, group_id: uuid.UUID = group_id) -> int:
            async with http.post(
                f"{posts.url}/groups/{group_id}/posts",
                json=post_body(i),
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                await response.read()
                return response.status

        started = time.perf_counter()
        statuses = await asyncio.gather(*(attempt(i, t) for i, t in enumerate(tokens)))
        times.append(time.perf_counter() - started)
        assert sorted(statuses) == [201] + [409] * 19, statuses
        rows = await posts.pool.fetchrow(
            """SELECT (SELECT count(*) FROM posts WHERE group_id = $1) AS posts,
                      (SELECT sum(posts) FROM post_days WHERE group_id = $1) AS counted,
                      (SELECT count(*) FROM outbox WHERE envelope->'payload'->>'group_id' = $1::text) AS events""",
            group_id,
        )
        assert (rows["posts"], rows["counted"], rows["events"]) == (1, 1, 1), dict(rows)
    return times


async def through_api(posts: Posts, http: aiohttp.ClientSession, count: int, concurrency: int) -> float:
    """Posts per second over HTTP, each to a group of its own."""
    groups = await groups_with_teachers(posts, count, 1)
    queue: asyncio.Queue[tuple[int, uuid.UUID, str]] = asyncio.Queue()
    for i, (group_id, tokens) in enumerate(groups):
        queue.put_nowait((i, group_id, tokens[0]))

    async def worker() -> None:
        while not queue.empty():
            i, group_id, token = queue.get_nowait()
            async with http.post(
                f"{posts.url}/groups/{group_id}/posts",
                json=post_body(i),
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                await response.read()
                assert response.status == 201, response.status

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def raw(posts: Posts, count: int, concurrency: int) -> float:
    """The same transaction from plain asyncpg: policy upsert, post row, outbox row."""
    groups = await groups_with_teachers(posts, count, 1)
    day: date = local_day(await posts.pool.fetchval("SELECT now()"), ZONE)
    queue: asyncio.Queue[tuple[int, uuid.UUID]] = asyncio.Queue()
    for i, (group_id, _tokens) in enumerate(groups):
        queue.put_nowait((i, group_id))

    async def worker() -> None:
        while not queue.empty():
            i, group_id = queue.get_nowait()
            post_id = uuid.uuid4()
            async with posts.pool.acquire() as conn, conn.transaction():
                counted = await conn.fetchval(
                    """INSERT INTO post_days (group_id, local_day, posts) VALUES ($1, $2, 1)
                       ON CONFLICT (group_id, local_day) DO UPDATE SET posts = post_days.posts + 1
                       WHERE post_days.posts < 1 RETURNING true""",
                    group_id,
                    day,
                )
                assert counted
                await conn.execute(
                    """INSERT INTO posts (post_id, group_id, school_id, author_id, title, body, local_day)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    post_id,
                    group_id,
                    posts.school_id,
                    uuid.uuid4(),
                    post_body(i)["title"],
                    post_body(i)["body"],
                    day,
                )
                await conn.execute(
                    """INSERT INTO outbox (event_id, routing_key, envelope, secret_fields, published_at)
                       VALUES ($1, $2, $3, '{}', now())""",
                    uuid.uuid4(),
                    "bench.raw",
                    {"post_id": str(post_id)},
                )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    # Written as published already, so the relay leaves them: the bench's own rows.
    await posts.pool.execute("DELETE FROM outbox WHERE routing_key = 'bench.raw'")
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    async with deployed() as posts, aiohttp.ClientSession() as http:
        times = sorted(await race(posts, http, args.rounds))
        print(
            f"race: {args.rounds} rounds of 20 concurrent posts to one group: exactly one accepted in each; "
            f"round time median {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
        )
        await through_api(posts, http, min(200, args.posts), args.concurrency)  # warm-up
        await raw(posts, min(200, args.posts), args.concurrency)
        api_rate = await through_api(posts, http, args.posts, args.concurrency)
        raw_rate = await raw(posts, args.posts, args.concurrency)
        print(
            f"throughput, {args.posts} posts, {args.concurrency} at once: API {api_rate:.0f} posts/s, "
            f"raw asyncpg {raw_rate:.0f} posts/s ({api_rate / raw_rate:.2f} of raw)"
        )


if __name__ == "__main__":
    asyncio.run(main())
