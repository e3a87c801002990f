"""The school-year switch at scale: many schools switch at once; how long until posts, media and the
notifier all agree with identity on who belongs to which group, beside the raw consume ceiling of
RabbitMQ measured in the same run.

Setup (not measured) goes straight into the tables for speed: per school 16 groups (groep 1A-8B)
with a teacher each, PUPILS children spread over them, two linked guardians per child, the
memberships derived in identity and copied as they are into the other services' copies. Next year
is prepared with the promotion of issue 5 (``identity.rollover.api.promote``: groep 8 is left out),
its groups taught by the same teachers. Setup events are not sent: the copies start equal.

Measured: in one transaction the old year is made to end yesterday and the new one to start today
for every school, and the lock that kept identity's year job out during setup is let go; the job
(every second here) switches the schools with ``switch_years``, each in a transaction of its own.
The clock runs from that commit until every service's copy equals identity's memberships (count,
active count and sum of revisions, then checked row by row).

Raw: plain aio-pika on the same broker, about as many persistent 1 KB messages into a quorum queue,
then consumed with manual ack (prefetch 100) by one consumer in this process; once before the switch
and once after it, as the machine's speed drifts.

Each service runs in a process of its own, as deployed (bench/deployment.py: ``python -m <service>``'s
``run``, the production delays, logging at INFO to /dev/null).

    cd /work/main && PYTHONPATH=.:services/identity:services/posts:services/media:services/notifier \\
        .venv/bin/python bench/year_switch.py [--schools 50] [--pupils 400]
"""

import argparse
import asyncio
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import date

import aio_pika
import asyncpg

from bench.deployment import Deployment, deployed
from identity import memberships
from identity.rollover.api import promote
from identity.rollover.domain import Promote

GROUPS = [f"Groep {grade}{letter}" for grade in range(1, 9) for letter in "AB"]
GUARDIANS_PER_CHILD = 2
OLD, NEW = "2026-2027", "2027-2028"
COPIES = ("posts", "media", "notifier")
RAW_QUEUE = "bench.year-switch.raw"
RAW_PREFETCH = 100
BODY_BYTES = 1024
JOB_LOCK = zlib.crc32(b"klaspost-job:identity-school-years")  # as shared.jobs keys it


@dataclass
class Figures:
    schools: int
    pupils: int
    events: int = 0
    switch_seconds: float = 0.0
    relayed_seconds: float = 0.0
    agreed_seconds: dict[str, float] = field(default_factory=dict)
    raw_before: float = 0.0
    raw_after: float = 0.0

    @property
    def raw_rate(self) -> float:
        """Raw measured before and after ours, averaged: the machine's speed drifts in between."""
        return (self.raw_before + self.raw_after) / 2

    @property
    def all_agreed(self) -> float:
        return max(self.agreed_seconds.values())


async def make_school(conn: asyncpg.Connection, index: int, pupils: int) -> None:
    """One school in identity's tables, promoted into next year; its setup events are dropped."""
    school_id = uuid.uuid4()
    before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    await conn.execute(
        "INSERT INTO schools (school_id, name) VALUES ($1, $2)", school_id, f"Bench school {index}"
    )
    old_year, new_year = uuid.uuid4(), uuid.uuid4()
    await conn.executemany(
        "INSERT INTO school_years (school_year_id, school_id, name, starts_on, ends_on) VALUES ($1, $2, $3, $4, $5)",
        [
            (old_year, school_id, OLD, date(2026, 8, 1), date(2027, 7, 31)),
            (new_year, school_id, NEW, date(2027, 8, 1), date(2028, 7, 31)),
        ],
    )
    await conn.execute("UPDATE schools SET current_year_id = $2 WHERE school_id = $1", school_id, old_year)
    groups = [uuid.uuid4() for _ in GROUPS]
    await conn.copy_records_to_table(
        "groups",
        records=[(g, school_id, old_year, name) for g, name in zip(groups, GROUPS, strict=True)],
        columns=["group_id", "school_id", "school_year_id", "name"],
    )
    teachers = [uuid.uuid4() for _ in GROUPS]
    await conn.copy_records_to_table(
        "accounts",
        records=[(t, f"juf.{t.hex}@bench.example.nl", "Juf") for t in teachers],
        columns=["person_id", "email", "display_name"],
    )
    await conn.copy_records_to_table(
        "staff",
        records=[(school_id, t, "teacher", "Juf") for t in teachers],
        columns=["school_id", "person_id", "role", "display_name"],
    )
    await conn.copy_records_to_table(
        "teaching", records=list(zip(groups, teachers, strict=True)), columns=["group_id", "person_id"]
    )
    children = [uuid.uuid4() for _ in range(pupils)]
    await conn.copy_records_to_table(
        "children",
        records=[(c, school_id, "Kind", f"Nummer {i}") for i, c in enumerate(children)],
        columns=["child_id", "school_id", "given_name", "family_name"],
    )
    await conn.copy_records_to_table(
        "placements",
        records=[(c, old_year, groups[i % len(groups)]) for i, c in enumerate(children)],
        columns=["child_id", "school_year_id", "group_id"],
    )
    guardians = [(c, uuid.uuid4()) for c in children for _ in range(GUARDIANS_PER_CHILD)]
    await conn.copy_records_to_table(
        "accounts",
        records=[(p, f"ouder.{p.hex}@bench.example.nl", "Ouder") for _, p in guardians],
        columns=["person_id", "email", "display_name"],
    )
    await conn.execute(
        """INSERT INTO guardianships (guardianship_id, child_id, school_id, email, person_id, linked_at)
           SELECT gen_random_uuid(), c, $1, 'ouder.' || replace(p::text, '-', '') || '@bench.example.nl', p, now()
           FROM unnest($2::uuid[], $3::uuid[]) AS g(c, p)""",
        school_id,
        [c for c, _ in guardians],
        [p for _, p in guardians],
    )
    await memberships.derive(conn, school_id)
    plan = await promote(conn, school_id, new_year, Promote())
    await conn.execute(
        """INSERT INTO teaching (group_id, person_id)
           SELECT g.group_id, t.person_id FROM groups g JOIN teaching t ON t.group_id = g.promoted_from
           WHERE g.school_year_id = $1""",
        new_year,
    )
    assert len(plan.groups) == len(GROUPS) - 2, plan
    await conn.execute("DELETE FROM outbox WHERE id > $1", before)


async def set_up(system: Deployment, schools: int, pupils: int) -> int:
    """Every school in identity's tables and identity's memberships in every copy; how many."""
    identity = system.pools["identity"]
    for index in range(schools):
        async with identity.acquire() as conn, conn.transaction():
            await make_school(conn, index, pupils)
    rows = await identity.fetch("SELECT group_id, person_id, role, active, revision FROM memberships")
    for service in COPIES:
        async with system.pools[service].acquire() as conn:
            await conn.copy_records_to_table(
                "memberships",
                records=[tuple(r) for r in rows],
                columns=["group_id", "person_id", "role", "active", "revision"],
            )
    print(f"set up {schools} schools x {pupils} pupils: {len(rows)} memberships in every copy", flush=True)
    return len(rows)


FINGERPRINT = "SELECT count(*), count(*) FILTER (WHERE active), coalesce(sum(revision), 0) FROM memberships"
ROWS = "SELECT group_id, person_id, role, active, revision FROM memberships"


async def fingerprint(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(FINGERPRINT)
    assert row is not None
    return (row[0], row[1], int(row[2]))


async def switch_all(system: Deployment, job_lock: asyncpg.Connection, figures: Figures) -> None:
    """Move every school's switch to today and let identity's year job go; wait for the copies."""
    identity = system.pools["identity"]
    before = await identity.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    today = await job_lock.fetchval("SELECT (now() AT TIME ZONE 'Europe/Amsterdam')::date")
    await job_lock.execute("UPDATE school_years SET ends_on = $1::date - 1 WHERE name = $2", today, OLD)
    await job_lock.execute("UPDATE school_years SET starts_on = $1 WHERE name = $2", today, NEW)
    await job_lock.execute("COMMIT")  # the new dates and the job's lock, at once
    started = time.perf_counter()
    done: dict[str, float] = {}
    target: tuple[int, int, int] | None = None
    last_shown = 0.0
    while len(done) < len(COPIES) + 2:
        now = time.perf_counter() - started
        if "switch" not in done and not await identity.fetchval(
            """SELECT count(*) FROM schools s JOIN school_years y ON y.school_year_id = s.current_year_id
               WHERE y.name <> $1""",
            NEW,
        ):
            done["switch"] = now
            target = await fingerprint(identity)
            figures.events = await identity.fetchval("SELECT count(*) FROM outbox WHERE id > $1", before)
        if (
            "switch" in done
            and "relay" not in done
            and not await identity.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        ):
            done["relay"] = now
        for service in COPIES:
            if (
                target is not None
                and service not in done
                and await fingerprint(system.pools[service]) == target
            ):
                done[service] = now
        if now - last_shown > 10:
            last_shown = now
            print(f"{now:6.0f} s: done {sorted(done)}", flush=True)
        if now > 3600:
            raise TimeoutError(f"copies did not agree within an hour: {done}")
        await asyncio.sleep(0.25)
    figures.switch_seconds = done.pop("switch")
    figures.relayed_seconds = done.pop("relay")
    figures.agreed_seconds = done
    expected = {tuple(r) for r in await identity.fetch(ROWS)}
    for service in COPIES:
        copy = {tuple(r) for r in await system.pools[service].fetch(ROWS)}
        assert copy == expected, f"{service}: {len(copy ^ expected)} rows differ"


async def raw_consume_rate(amqp_url: str, count: int) -> float:
    """Publish ``count`` persistent 1 KB messages (confirms in batches of 100), then consume them with
    manual ack; messages per second of the consume, first to last message."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(RAW_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        body = b"x" * BODY_BYTES
        for offset in range(0, count, 100):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=RAW_QUEUE,
                    )
                    for _ in range(min(100, count - offset))
                )
            )
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=RAW_PREFETCH)
        queue = await consumer.get_queue(RAW_QUEUE)
        done = asyncio.Event()
        times: list[float] = []

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            times.append(time.perf_counter())
            if len(times) == count:
                done.set()

        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=600)
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return (count - 1) / (times[-1] - times[0])
    finally:
        await connection.close()


async def run(schools: int, pupils: int) -> Figures:
    figures = Figures(schools, pupils)
    # The year job every second (the production default checks less often).
    identity = {"school_year_check_seconds": 1.0}
    async with (
        deployed(settings={"identity": identity}) as system,
        system.pools["identity"].acquire() as job_lock,
    ):
        # The year job would switch the schools during setup: keep it out (it skips its rounds while
        # another holds its lock) until the switch.
        await job_lock.execute("BEGIN")
        await job_lock.execute("SELECT pg_advisory_xact_lock($1)", JOB_LOCK)
        memberships_count = await set_up(system, schools, pupils)
        # About as many messages as the switch makes events (each membership revoked or granted).
        figures.raw_before = await raw_consume_rate(system.amqp_url, 2 * memberships_count)
        await switch_all(system, job_lock, figures)
        figures.raw_after = await raw_consume_rate(system.amqp_url, figures.events)
    return figures


def report(f: Figures) -> str:
    assert f.agreed_seconds
    ours = f.events / f.all_agreed
    lines = [
        f"{f.schools} schools x {f.pupils} pupils, {GUARDIANS_PER_CHILD} guardians each: {f.events:,} membership events",
        "",
        "| figure | value |",
        "| --- | --: |",
        f"| identity: all schools switched (committed), s | {f.switch_seconds:.1f} |",
        f"| identity: outbox relayed, s | {f.relayed_seconds:.1f} |",
        *(f"| {s}: copy agrees with identity, s | {t:.1f} |" for s, t in sorted(f.agreed_seconds.items())),
        f"| ours: events/s until all three copies agree | {ours:,.0f} |",
        f"| ours: deliveries/s (events x 3 services) | {3 * ours:,.0f} |",
        f"| raw: aio-pika consume, 1 KB persistent, manual ack, prefetch {RAW_PREFETCH}, before / after ours (msg/s) | {f.raw_before:,.0f} / {f.raw_after:,.0f} |",
        f"| ratio events/s ours / raw (mean of before and after) | {ours / f.raw_rate:.2f} |",
        f"| ratio deliveries/s ours / raw | {3 * ours / f.raw_rate:.2f} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--pupils", type=int, default=400)
    args = parser.parse_args()
    print(report(asyncio.run(run(args.schools, args.pupils))))


if __name__ == "__main__":
    main()
