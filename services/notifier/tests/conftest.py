"""A notifier of its own for these tests: the real app on a fresh database and RabbitMQ vhost,
mailing to a real SMTP server, fed events over the broker exactly as identity and posts publish them."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aiohttp import web

from notifier.app import spec
from notifier.events import handlers
from notifier.settings import Settings
from shared import bus
from shared.app import POOL, create_app
from shared.envelope import Envelope, Event, envelope
from shared.outbox import to_message
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
from shared.testing.smtp import ReceivedMail, SmtpSink

PUBLIC_BASE_URL = "https://klaspost.test"


@dataclass
class RunningNotifier:
    runner: web.AppRunner
    settings: Settings
    sink: SmtpSink
    broker: AbstractRobustConnection
    exchange: AbstractExchange

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runner.app[POOL]

    async def publish(self, event: Event, school_id: uuid.UUID | None = None) -> Envelope:
        """Publish an event as a producer's outbox relay would; returns its envelope."""
        env = envelope(event, school_id, f"test-{uuid.uuid4().hex[:8]}")
        await self.publish_envelope(env)
        return env

    async def publish_envelope(self, env: Envelope) -> None:
        """Publish this very envelope (again: a redelivery has the same event id)."""
        await self.exchange.publish(
            to_message(env.model_dump(mode="json"), env.event_id), routing_key=env.type, mandatory=True
        )

    async def handle_directly(self, env: Envelope) -> None:
        """Run the event's handler in a transaction of its own, past the inbox (as after the inbox row
        of a handled event was trimmed)."""
        handler = handlers.by_type[env.type]
        async with self.pool.acquire() as conn, conn.transaction():
            await handler.run(conn, env, handler.event.model_validate(env.payload))

    async def eventually(self, check: Callable[[], Awaitable[bool]], what: str = "condition") -> None:
        await eventually(check, what=what)

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.sink.messages if address in m.rcpt_tos]

    async def mail_to(self, address: str) -> ReceivedMail:
        """The one mail to address, once it arrived."""

        async def arrived() -> bool:
            return bool(self.mails_to(address))

        await eventually(arrived, what=f"a mail to {address}")
        [mail] = self.mails_to(address)
        return mail

    async def mail_row(self, mail_id: uuid.UUID) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM mails WHERE mail_id = $1", mail_id)
        assert row is not None, f"no mail {mail_id}"
        return row

    async def mail_status(self, mail_id: uuid.UUID, status: str) -> asyncpg.Record:
        """The mail's row once it has the status."""

        async def reached() -> bool:
            return bool(
                await self.pool.fetchval("SELECT status FROM mails WHERE mail_id = $1", mail_id) == status
            )

        await eventually(reached, what=f"mail {mail_id} {status}")
        return await self.mail_row(mail_id)


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` holds: events are handled and mails sent asynchronously."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def notifier() -> AsyncIterator[RunningNotifier]:
    async with contextlib.AsyncExitStack() as stack:
        amqp_url = await create_vhost()
        stack.push_async_callback(delete_vhost, amqp_url)
        database_url = await create_database("notifier")
        stack.push_async_callback(drop_database, database_url)
        sink = await stack.enter_async_context(SmtpSink())
        settings = Settings.model_validate(
            {
                "http_port": free_port(),
                "database_url": database_url,
                "amqp_url": amqp_url,
                # Nothing here calls the HTTP API: the keys are never fetched.
                "jwks_url": f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
                "smtp_host": sink.host,
                "smtp_port": sink.port,
                "smtp_timeout_seconds": 5,
                "mail_from": "Klaspost <noreply@klaspost.test>",
                "public_base_url": PUBLIC_BASE_URL,
                "retry_delays_ms": [200, 1000],
                "outbox_sweep_seconds": 0.5,
            }
        )
        runner = web.AppRunner(create_app(spec(), settings), access_log=None)
        stack.push_async_callback(runner.cleanup)
        await runner.setup()
        broker = await bus.connect(amqp_url, "notifier-tests")
        stack.push_async_callback(broker.close)
        exchange = await bus.declare_exchange(await bus.publisher_channel(broker), settings.exchange)
        yield RunningNotifier(runner, settings, sink, broker, exchange)
