"""A parked copy keeps no secret (shared/consumer.py): the fields its type names secret are blanked
and the ``x-klaspost-withheld`` header says which; a body that is not a JSON envelope is parked
without it. Replayed (shared.deadletters), the event reaches its handler without the secret. Against
the real RabbitMQ and PostgreSQL."""

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from shared import bus
from shared.consumer import WITHHELD_HEADER, Consumer, Handlers, without_secrets
from shared.db import create_pool
from shared.deadletters import list_parked, replay, withhold
from shared.envelope import Envelope, Event, envelope, register
from shared.migrations import migrate
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database

SERVICE = "notifier"  # the deadletters command knows the four services; the vhost is the test's own


@register
class SecretIssued(Event):
    """Shaped like InvitationIssued: a secret, with a default as InvitationIssued's access_code has."""

    type = "test.secret_issued"
    secret_fields = frozenset({"access_code"})
    access_code: str = ""
    note: str


@dataclass
class Seen:
    failing: bool = True
    codes: list[str] = field(default_factory=list)


seen = Seen()
handlers = Handlers()


@handlers.on(SecretIssued)
async def secret_issued(_conn: asyncpg.Connection, _env: Envelope, event: SecretIssued) -> None:
    if seen.failing:
        raise RuntimeError("the mail table is full")
    seen.codes.append(event.access_code)


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[tuple[str, aio_pika.abc.AbstractChannel]]:
    dsn = await create_database("parkedsecrets")
    amqp_url = await create_vhost()
    pool = await create_pool(dsn, 3)
    async with pool.acquire() as conn:
        await migrate(conn, Path(__file__).parent / "migrations")
    consumer_conn = await bus.connect(amqp_url, "test-consumer")
    consumer = Consumer(SERVICE, pool, handlers, "klaspost.events", [50], 10, 10)
    await consumer.start(consumer_conn)
    publisher = await aio_pika.connect(amqp_url)
    channel = await publisher.channel()
    yield amqp_url, channel
    await publisher.close()
    await consumer_conn.close()
    await pool.close()
    await delete_vhost(amqp_url)
    await drop_database(dsn)


async def _parked(amqp_url: str) -> dict[str, tuple[bytes, dict[str, Any]]]:
    """Every parked message's body and headers by message id (taken and put back)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(bus.QueueNames(SERVICE).parked, passive=True)
        found: dict[str, tuple[bytes, dict[str, Any]]] = {}
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found[str(message.message_id)] = (message.body, dict(message.headers))
        return found


async def _until(check: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)


async def test_a_parked_event_keeps_no_secret_and_replayed_reaches_its_handler_without_it(
    broker: tuple[str, aio_pika.abc.AbstractChannel],
) -> None:
    amqp_url, channel = broker
    code = secrets.token_urlsafe(12)
    env = envelope(SecretIssued(access_code=code, note="groep 5"), None)
    body = env.model_dump_json().encode()
    not_json = b'{"payload": {"access_code": "' + code.encode() + b'", '
    for message_id, content in (("event", body), ("not-json", not_json)):
        message = aio_pika.Message(
            content, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await channel.default_exchange.publish(message, routing_key=SERVICE)

    async def both_parked() -> bool:
        return set(await _parked(amqp_url)) == {"event", "not-json"}

    await _until(both_parked, "both parked")  # the event after its one retry
    parked = await _parked(amqp_url)
    assert all(code.encode() not in content for content, _ in parked.values())
    event_body, event_headers = parked["event"]
    assert event_headers[WITHHELD_HEADER] == "payload.access_code"
    assert json.loads(event_body)["payload"] == {"access_code": "", "note": "groep 5"}
    assert parked["not-json"] == (b"", parked["not-json"][1])
    assert parked["not-json"][1][WITHHELD_HEADER] == "body"
    listed = {row["message_id"]: row for row in await list_parked(amqp_url, SERVICE)}
    assert listed["event"]["withheld"] == "payload.access_code"

    seen.failing = False  # the cause is fixed
    assert await replay(amqp_url, SERVICE, {"event"}) == 1

    async def handled() -> bool:
        return bool(seen.codes)

    await _until(handled, "the replayed event handled")
    assert seen.codes == [""]
    assert set(await _parked(amqp_url)) == {"not-json"}


async def test_a_message_parked_before_keeps_its_secret_until_withheld(
    broker: tuple[str, aio_pika.abc.AbstractChannel],
) -> None:
    amqp_url, channel = broker
    code = secrets.token_urlsafe(12)
    env = envelope(SecretIssued(access_code=code, note="oud"), None)
    message_id = f"legacy-{uuid.uuid4().hex[:8]}"
    legacy = aio_pika.Message(
        env.model_dump_json().encode(), message_id=message_id, headers={"x-klaspost-attempt": 1}
    )
    await channel.default_exchange.publish(legacy, routing_key=bus.QueueNames(SERVICE).parked)

    async def arrived() -> bool:
        return message_id in await _parked(amqp_url)

    await _until(arrived, "the legacy message parked")
    assert await withhold(amqp_url, SERVICE) == 1
    assert await withhold(amqp_url, SERVICE) == 0  # once
    body, headers = (await _parked(amqp_url))[message_id]
    assert code.encode() not in body
    assert (headers[WITHHELD_HEADER], headers["x-klaspost-attempt"]) == ("payload.access_code", 1)


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (b'{"type": "unknown.type", "version": 1, "payload": {"reset_token": "t0k"}}', "payload.reset_token"),
        (b'{"type": "test.secret_issued", "version": 1, "payload": {"note": "x"}}', None),
        (b'["access_code", "c0de"]', "body"),
        (b'{"type": "x", "payload": "access_code=c0de"}', "body"),
        (b"\xff\xfe", "body"),
    ],
)
def test_what_a_parked_body_withholds(body: bytes, kept: str | None) -> None:
    # A type not known here still loses any field named like a secret (shared.logs.SECRET_FIELDS).
    parked, withheld = without_secrets(body)
    assert withheld == ([kept] if kept else [])
    assert b"t0k" not in parked
    assert b"c0de" not in parked
    if kept is None:
        assert parked == body
