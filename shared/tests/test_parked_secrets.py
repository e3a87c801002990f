"""A parked event's error never carries what the event carried (issue 8: no access code or reset
token outside the message that needs it): not in the ``x-klaspost-last-error`` header of any copy
(retry or parking queue), not in ``python -m shared.deadletters list``. Against the real RabbitMQ and
PostgreSQL: an invitation-like event that fails validation, JSON that does not parse, a handler whose
validation or other error quotes the code, and a message parked before the header was made safe."""

import asyncio
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from pydantic import BaseModel

from shared import bus
from shared.consumer import ATTEMPT_HEADER, Consumer, Handlers, error_text
from shared.db import create_pool
from shared.deadletters import list_parked
from shared.envelope import Envelope, Event, register
from shared.migrations import migrate
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database

# The deadletters command knows the four services: the test's own vhost stands in for a deployment.
SERVICE = "notifier"
CODE = secrets.token_urlsafe(12)
LEGACY_ERROR = (
    f"1 validation error ... input_value={{'access_code': '{CODE}', 'seats': 'many'}}, input_type=dict]"
)


@register
class CodeIssued(Event):
    """Shaped like InvitationIssued: a secret and something that can be wrong."""

    type = "test.code_issued"
    secret_fields = frozenset({"access_code"})
    access_code: str
    seats: int


class _Mail(BaseModel):
    access_code: str
    seats: int


handlers = Handlers()


@handlers.on(CodeIssued)
async def code_issued(_conn: asyncpg.Connection, _env: Envelope, event: CodeIssued) -> None:
    if event.seats == -1:  # a handler validating what it builds from the event
        _Mail.model_validate({"access_code": event.access_code, "seats": "many"})
    if event.seats == -2:  # a handler whose own error quotes the event
        raise RuntimeError(f"cannot mail access_code={event.access_code}")


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[tuple[str, aio_pika.abc.AbstractChannel]]:
    dsn = await create_database("parked")
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


def _body(payload: dict[str, Any]) -> bytes:
    env = {"event_id": str(uuid.uuid4()), "type": CodeIssued.type, "version": 1, "school_id": None}
    return json.dumps(env | {"payload": payload}).encode()


async def _send(
    channel: aio_pika.abc.AbstractChannel, body: bytes, message_id: str, queue: str = SERVICE
) -> None:
    message = aio_pika.Message(body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
    await channel.default_exchange.publish(message, routing_key=queue)


async def _parked_headers(amqp_url: str) -> dict[str, dict[str, Any]]:
    """Every parked message's headers by message id (taken and put back)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(bus.QueueNames(SERVICE).parked, passive=True)
        found: dict[str, dict[str, Any]] = {}
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found[str(message.message_id)] = dict(message.headers)
        return found  # closing the channel returns them unacked


async def test_no_parked_error_and_no_deadletters_line_carries_the_events_secret(
    broker: tuple[str, aio_pika.abc.AbstractChannel],
) -> None:
    amqp_url, channel = broker
    cases = {
        "unreadable": _body({"access_code": CODE, "seats": "many"}),
        "missing-field": _body({"access_code": CODE}),
        "not-json": b'{"payload": {"access_code": "' + CODE.encode() + b'", ',
        "handler-validation": _body({"access_code": CODE, "seats": -1}),
        "handler-error": _body({"access_code": CODE, "seats": -2}),
    }
    for message_id, body in cases.items():
        await _send(channel, body, message_id)
    # Parked before errors were kept safe: the header quotes pydantic's str() of the error.
    legacy = aio_pika.Message(
        _body({"access_code": CODE, "seats": "many"}),
        message_id="legacy",
        headers={ATTEMPT_HEADER: 0, "x-klaspost-last-error": f"unreadable event: {LEGACY_ERROR}"},
    )
    await channel.default_exchange.publish(legacy, routing_key=bus.QueueNames(SERVICE).parked)

    deadline = asyncio.get_running_loop().time() + 30
    while set(await _parked_headers(amqp_url)) != {*cases, "legacy"}:
        assert asyncio.get_running_loop().time() < deadline, await _parked_headers(amqp_url)
        await asyncio.sleep(0.1)

    headers = await _parked_headers(amqp_url)
    for message_id in cases:
        assert CODE not in json.dumps(headers[message_id], default=str), (message_id, headers[message_id])
    errors = {message_id: str(headers[message_id]["x-klaspost-last-error"]) for message_id in cases}
    # What an operator needs is still there: which field, what is wrong with it.
    assert "seats: Input should be a valid integer" in errors["unreadable"]
    assert "seats: Field required" in errors["missing-field"]
    assert "json_invalid" in errors["not-json"]
    assert "seats: Input should be a valid integer" in errors["handler-validation"]
    assert "cannot mail access_code=[withheld]" in errors["handler-error"]
    assert headers["handler-error"][ATTEMPT_HEADER] == 1  # retried once first, then parked

    listed = await list_parked(amqp_url, SERVICE)
    assert {row["message_id"] for row in listed} == {*cases, "legacy"}
    assert CODE not in json.dumps(listed, default=str)
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.deadletters", "list", "--service", SERVICE,
        env={**os.environ, "AMQP_URL": amqp_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(command.communicate(), 60)
    assert command.returncode == 0, err
    assert len(out.decode().splitlines()) == len(cases) + 1
    assert CODE.encode() not in out + err


def test_a_validation_error_is_described_by_field_and_problem_without_its_input() -> None:
    try:
        CodeIssued.model_validate({"access_code": CODE, "seats": "many", "extra": CODE})
    except ValueError as exc:
        text = error_text(exc)
    assert CODE not in text
    assert text.startswith("2 validation error(s) for CodeIssued: seats: Input should be a valid integer")
    assert "extra: Extra inputs are not permitted" in text
