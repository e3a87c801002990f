"""The parent feed of the posts service beside a bare aiohttp + asyncpg app running the same query.

A fresh database gets posts' migrations and a generated world: first one school, then 999 more, each
with 20 groups and 40 weeks of posts (``--per-week`` a group, COPY). The measured parents are those
of the first school, each with a child in two of its groups, so the same requests are timed on 1 and
on 1,000 schools of data. Likes, reads and photos are made for the first school's posts only (the
feed reads them per post by primary key; the other schools add the bulk the feed must not feel).

Per phase and round, ours and raw are driven by wrk (one thread) at 16 and 64 connections, one after
the other, so the machine's drift hits both alike; each request names another parent (token and id).
Ours: ``python -m posts`` (one process: middlewares, token check, query validation, the feed handler).
Raw: this file as ``raw PORT DSN``: aiohttp with one handler, an asyncpg pool of the same size, the
same SQL (posts.feed.store.feed_json), the person taken from a header, no token.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts \\
        .venv/bin/python bench/feed.py [--schools 1000] [--per-week 3] [--rounds 3] [--seconds 10]
"""

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
GROUPS_PER_SCHOOL = 20
WEEKS = 40
PARENTS_PER_GROUP = 25
MEASURED_PARENTS = 200
POOL_SIZE = 10  # posts' default db_pool_size
CONNECTIONS = (16, 64)


# --- the bare app -----------------------------------------------------------------------------


def serve_raw(port: int, dsn: str) -> None:
    """The ceiling: one handler, the same query, nothing else."""
    sys.path[:0] = [str(ROOT), str(ROOT / "services/posts")]
    from posts.feed.store import feed_json

    pool_key = web.AppKey("pool", asyncpg.Pool)

    async def feed(request: web.Request) -> web.Response:
        person = uuid.UUID(request.headers["X-Person"])
        async with request.app[pool_key].acquire() as conn:
            text = await feed_json(conn, person, 20, None)
        return web.Response(body=text.encode(), content_type="application/json")

    async def pool(app: web.Application) -> Any:
        app[pool_key] = await asyncpg.create_pool(dsn, min_size=1, max_size=POOL_SIZE)
        yield
        await app[pool_key].close()

    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_get("/feed", feed)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the data ---------------------------------------------------------------------------------


def _copy_rows(rows: list[tuple[Any, ...]]) -> io.BytesIO:
    return io.BytesIO(
        "".join("\t".join("\\N" if v is None else str(v) for v in r) + "\n" for r in rows).encode()
    )


async def copy(
    conn: asyncpg.Connection, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]
) -> int:
    """COPY in chunks; returns the number of rows."""
    total = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == 50_000:
            await conn.copy_to_table(table, source=_copy_rows(chunk), columns=columns)
            total += len(chunk)
            chunk = []
    if chunk:
        await conn.copy_to_table(table, source=_copy_rows(chunk), columns=columns)
        total += len(chunk)
    return total


def _array(ids: list[uuid.UUID]) -> str:
    return "{" + ",".join(str(i) for i in ids) + "}"


async def add_schools(
    conn: asyncpg.Connection, count: int, per_week: int, rng: random.Random, measured: bool
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``count`` schools of 20 groups with parents and 40 weeks of posts; for the measured school also
    two-group parents, likes, reads and photos. Returns the measured parents (person_id, a group)."""
    now = datetime.now(UTC)
    groups: list[tuple[Any, ...]] = []
    members: list[tuple[Any, ...]] = []
    posts: list[tuple[Any, ...]] = []
    group_ids: list[uuid.UUID] = []
    body = "Vandaag hebben we in de klas geoefend met rekenen en daarna buiten gespeeld. " * 3
    for _ in range(count):
        school = uuid.uuid4()
        teacher = uuid.uuid4()
        school_groups = [uuid.uuid4() for _ in range(GROUPS_PER_SCHOOL)]
        group_ids += school_groups
        for n, group in enumerate(school_groups):
            groups.append((group, school, f"Groep {n + 1}", "2026-2027", 1))
            members.append((group, teacher, "teacher", "t", 1, "{}"))
            for _ in range(PARENTS_PER_GROUP):
                members.append((group, uuid.uuid4(), "guardian", "t", 1, _array([uuid.uuid4()])))
            for week in range(WEEKS):
                for day in range(per_week):
                    at = now - timedelta(weeks=week, days=day, minutes=rng.randrange(600))
                    posts.append((uuid.uuid4(), group, school, teacher, body, at, "Nieuws", at))
    measured_parents: list[tuple[uuid.UUID, uuid.UUID]] = []
    if measured:
        for _ in range(MEASURED_PARENTS):
            parent = uuid.uuid4()
            for group in rng.sample(group_ids[:GROUPS_PER_SCHOOL], 2):
                members.append((group, parent, "guardian", "t", 1, _array([uuid.uuid4()])))
            measured_parents.append((parent, group))
    await copy(conn, "groups", ["group_id", "school_id", "name", "school_year", "revision"], iter(groups))
    await copy(
        conn,
        "memberships",
        ["group_id", "person_id", "role", "active", "revision", "children"],
        iter(members),
    )
    await copy(
        conn,
        "posts",
        ["post_id", "group_id", "school_id", "author_id", "body", "created_at", "title", "published_at"],
        iter(posts),
    )
    if measured:
        parents = [p for p, _ in measured_parents]
        likes = [(p[0], liker) for p in posts for liker in rng.sample(parents, 5)]
        reads = [(p[0], reader) for p in posts for reader in rng.sample(parents, 15)]
        photos = [(p[0], uuid.uuid4(), i, "ready") for p in posts for i in range(2)]
        await copy(conn, "likes", ["post_id", "person_id"], iter(likes))
        await copy(conn, "reads", ["post_id", "person_id"], iter(reads))
        await copy(conn, "post_photos", ["post_id", "photo_id", "position", "status"], iter(photos))
        await conn.execute(
            "UPDATE posts p SET like_count = (SELECT count(*) FROM likes l WHERE l.post_id = p.post_id) "
            "WHERE p.school_id = $1",
            posts[0][2],
        )
    return measured_parents


# --- the load ---------------------------------------------------------------------------------

WRK_SCRIPT = """
local callers = {%s}
local i = 0
request = function()
  i = i %% #callers + 1
  local c = callers[i]
  return wrk.format("GET", "/feed", {["Authorization"] = "Bearer " .. c[1], ["X-Person"] = c[2]})
end
"""


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    # wrk from PATH (apt-get install wrk), with our own arguments.
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored at a line's start: "70.50%" in the thread statistics above also ends in "50%".
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise RuntimeError(f"failed requests:\n{out}")
    return {"rps": rps, "p50": p50, "p99": p99}


def start(command: list[str], env: dict[str, str], log_path: Path | None) -> "subprocess.Popen[bytes]":
    """A server process of ours (before any load is timed), its output to ``log_path`` if given."""
    if log_path is None:
        return subprocess.Popen(command, env=env)  # noqa: S603 - our own command
    with log_path.open("wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url):
                    return  # any answer: it listens (the raw app errs without a person)
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def measure(
    label: str, ours: str, raw: str, script: Path, rounds: int, seconds: int
) -> dict[int, dict[str, list[float]]]:
    figures: dict[int, dict[str, list[float]]] = {}
    for connections in CONNECTIONS:
        wrk(ours, script, connections, 3)  # warm both: pools filled, caches hot
        wrk(raw, script, connections, 3)
        f = figures.setdefault(connections, {})
        for _ in range(rounds):
            for name, url in (("ours", ours), ("raw", raw)):
                r = wrk(url, script, connections, seconds)
                for k, v in r.items():
                    f.setdefault(f"{name}_{k}", []).append(v)
            f.setdefault("ratio", []).append(f["ours_rps"][-1] / f["raw_rps"][-1])
        med = {k: statistics.median(v) for k, v in f.items()}
        print(
            f"{label:>12} c={connections:<3} ours {med['ours_rps']:7.0f} req/s p50 {med['ours_p50']:6.1f} ms "
            f"p99 {med['ours_p99']:6.1f} ms | raw {med['raw_rps']:7.0f} req/s p50 {med['raw_p50']:6.1f} ms "
            f"p99 {med['raw_p99']:6.1f} ms | ratio {med['ratio']:.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in f['ratio'])})",
            flush=True,
        )
    return figures


async def main(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "services/identity"), str(ROOT / "services/posts")]
    from identity.tokens import TokenSigner
    from shared.migrations import migrate
    from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
    from shared.tokens import Caller

    dsn = await create_database("bench_feed")
    amqp_url = await create_vhost()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        conn = await asyncpg.connect(dsn)
        await migrate(conn, ROOT / "services/posts/posts/migrations")
        rng = random.Random(6)
        started = time.perf_counter()
        parents = await add_schools(conn, 1, args.per_week, rng, measured=True)
        await conn.execute("ANALYZE")
        print(f"1 school generated in {time.perf_counter() - started:.1f} s", flush=True)

        key = Ed25519PrivateKey.generate()
        signer = TokenSigner(key, issuer="klaspost-identity", ttl_seconds=7200)
        callers = ", ".join(f'{{"{signer.issue(Caller(p))}", "{p}"}}' for p, _ in parents)
        workdir = Path(tempfile.mkdtemp(prefix="bench-feed-"))
        script = workdir / "feed.lua"
        script.write_text(WRK_SCRIPT % callers)
        ours_port, raw_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}:{ROOT / 'services/posts'}",
            "DATABASE_URL": dsn,
            "AMQP_URL": amqp_url,
            "JWKS_JSON": json.dumps(signer.jwks()),
            "HTTP_PORT": str(ours_port),
            "LOG_LEVEL": "INFO",
        }
        log_path = workdir / "posts.log"
        processes.append(start([sys.executable, "-m", "posts"], env, log_path))
        processes.append(start([sys.executable, __file__, "raw", str(raw_port), dsn], env, None))
        ours, raw = f"http://127.0.0.1:{ours_port}/feed", f"http://127.0.0.1:{raw_port}/feed"
        await wait_ready(ours)
        await wait_ready(raw)
        # The two answer alike (the raw app's text is the handler's).
        async with aiohttp.ClientSession() as session:
            p = parents[0][0]
            async with session.get(ours, headers={"Authorization": f"Bearer {signer.issue(Caller(p))}"}) as r:
                assert r.status == 200, await r.text()
                mine = await r.json()
            async with session.get(raw, headers={"X-Person": str(p)}) as r:
                assert await r.json() == mine
            assert len(mine["posts"]) == 20

        one = measure("1 school", ours, raw, script, args.rounds, args.seconds)
        log_after_one = log_path.stat().st_size
        started = time.perf_counter()
        for _ in range(0, args.schools - 1, 50):
            await add_schools(conn, min(50, args.schools - 1 - _), args.per_week, rng, measured=False)
        await conn.execute("ANALYZE")
        rows = await conn.fetchval("SELECT count(*) FROM posts")
        print(
            f"{args.schools} schools ({rows} posts) generated in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        many = measure(f"{args.schools} schools", ours, raw, script, args.rounds, args.seconds)
        print(
            f"posts' log during all runs: {log_path.stat().st_size} bytes ({log_after_one} after the first phase)"
        )
        for c in CONNECTIONS:
            print(
                f"p99 ours c={c}: {statistics.median(one[c]['ours_p99']):.1f} ms on 1 school, "
                f"{statistics.median(many[c]['ours_p99']):.1f} ms on {args.schools}"
            )
        await conn.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
        await drop_database(dsn)
        await delete_vhost(amqp_url)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "raw":
        serve_raw(int(sys.argv[2]), sys.argv[3])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--schools", type=int, default=1000)
        parser.add_argument("--per-week", type=int, default=3)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--seconds", type=int, default=10)
        asyncio.run(main(parser.parse_args()))
