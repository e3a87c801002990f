"""The transactional outbox: ``publish(conn, event)`` in the caller's transaction, and the relay
that moves unsent rows to RabbitMQ with publisher confirms.

At-least-once: a crash between the broker's confirm and marking the row sent re-sends it later;
consumers deduplicate on the event id (see ``shared.consumer``).
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import asyncpg

from shared.envelope import Envelope, Event, envelope
from shared.logs import correlation_id

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox"


async def publish(
    conn: asyncpg.Connection, event: Event, school_id: uuid.UUID | None, event_id: uuid.UUID | None = None
) -> Envelope:
    """Write an event in the caller's transaction; it is relayed after commit. ``event_id`` (default a
    new one): a deterministic id, so that writing the same event twice fails on the outbox's unique
    event_id instead of sending it twice."""
    return (await publish_many(conn, [event], school_id, [event_id] if event_id else None))[0]


async def publish_many(
    conn: asyncpg.Connection,
    events: Sequence[Event],
    school_id: uuid.UUID | None,
    event_ids: Sequence[uuid.UUID] | None = None,
) -> list[Envelope]:
    """Write several events of one school in the caller's transaction, in one round trip (a year
    switch publishes thousands of membership changes at once). ``event_ids``: one per event, as for
    ``publish``."""
    cid = correlation_id.get()
    ids = list(event_ids) if event_ids is not None else [None] * len(events)
    if len(ids) != len(events):
        raise ValueError("one event id per event")
    envs = [envelope(event, school_id, cid, event_id) for event, event_id in zip(events, ids, strict=True)]
    if not envs:
        return []
    await conn.executemany(
        "INSERT INTO outbox (event_id, routing_key, envelope, secret_fields) VALUES ($1, $2, $3, $4)",
        [
            (env.event_id, env.type, env.model_dump(mode="json"), sorted(event.secret_fields))
            for env, event in zip(envs, events, strict=True)
        ],
    )
    # Delivered at commit only, and folded into one per transaction: wakes the relay at once.
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return envs


def to_message(env: dict[str, Any], message_id: uuid.UUID) -> aio_pika.Message:
    return aio_pika.Message(
        body=json.dumps(env, separators=(",", ":")).encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(message_id),
        type=env["type"],
        correlation_id=env.get("correlation_id"),
    )


class OutboxRelay:
    """Publishes unsent outbox rows. Replicas share the work through ``FOR UPDATE SKIP LOCKED``, and so
    do the batches one relay keeps in flight at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        exchange: aio_pika.abc.AbstractExchange,
        batch: int,
        timeout: float,
        in_flight: int = 2,
    ) -> None:
        self._pool = pool
        self._exchange = exchange
        self._batch = batch
        self._timeout = timeout
        self._in_flight = in_flight

    async def drain(self) -> int:
        # Each batch in its own transaction: one's database work overlaps the other's wait for confirms.
        # Batches do not keep id order between them; neither do replicas.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._drain_batches()) for _ in range(self._in_flight)]
        return sum(task.result() for task in tasks)

    async def _drain_batches(self) -> int:
        total = 0
        while sent := await self._drain_batch():
            total += sent
        return total

    async def _drain_batch(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, event_id, routing_key, envelope FROM outbox
                   WHERE published_at IS NULL AND next_attempt_at <= now()
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch,
            )
            if not rows:
                return 0
            # All confirms awaited together: the broker batches them, many times faster than one by one.
            results = await asyncio.gather(
                *(
                    self._exchange.publish(
                        to_message(r["envelope"], r["event_id"]),
                        routing_key=r["routing_key"],
                        mandatory=True,
                        timeout=self._timeout,
                    )
                    for r in rows
                ),
                return_exceptions=True,
            )
            sent = [
                r["id"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)
            ]
            failed = [
                (r["id"], repr(res))
                for r, res in zip(rows, results, strict=True)
                if isinstance(res, BaseException)
            ]
            if sent:
                # Secrets leave with the event: the row keeps the rest for tracing, not the code.
                await conn.execute(
                    """UPDATE outbox SET published_at = now(),
                         envelope = CASE WHEN secret_fields = '{}' THEN envelope
                           ELSE jsonb_set(envelope, '{payload}', (envelope -> 'payload') - secret_fields) END
                       WHERE id = ANY($1)""",
                    sent,
                )
            if failed:
                # Back off per row (1 s doubling to 60 s) so that one unroutable event cannot hold up the rest.
                await conn.executemany(
                    """UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                         next_attempt_at = now() + least(power(2, attempts), 60) * interval '1 second'
                       WHERE id = $1""",
                    failed,
                )
                log.warning("outbox publish failed", extra={"failed": len(failed), "error": failed[0][1]})
        return len(sent)


async def outbox_backlog(conn: asyncpg.Connection) -> dict[str, Any]:
    """Unsent count and age of the oldest unsent event, for metrics and readiness."""
    row = await conn.fetchrow(
        """SELECT count(*) AS unsent, extract(epoch FROM now() - min(created_at)) AS oldest_seconds
           FROM outbox WHERE published_at IS NULL"""
    )
    assert row is not None
    return {"unsent": row["unsent"], "oldest_seconds": float(row["oldest_seconds"] or 0.0)}
