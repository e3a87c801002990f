"""The consumer: one durable queue per service, an idempotent inbox, retries with growing delay,
then the parking queue.

Each handler runs in one database transaction that first records the event id in ``inbox``; a
redelivered event finds its row and has no second effect. The message is acked only after commit,
and a failure is re-published (confirmed) to a delay queue before the original is acked.
"""

import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from shared.bus import QueueNames, declare_exchange, declare_service_queues
from shared.envelope import Envelope, Event
from shared.logs import correlation_id

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
ATTEMPT_HEADER = "x-klaspost-attempt"


@dataclass(frozen=True)
class Handler(Generic[E]):
    event: type[E]
    run: Callable[[asyncpg.Connection, Envelope, E], Awaitable[None]]


class Handlers:
    """The events a service handles: one handler per event type, registered with ``@handlers.on``."""

    def __init__(self) -> None:
        self.by_type: dict[str, Handler[Any]] = {}

    def on(
        self, event: type[E]
    ) -> Callable[
        [Callable[[asyncpg.Connection, Envelope, E], Awaitable[None]]], Callable[..., Awaitable[None]]
    ]:
        def register(
            fn: Callable[[asyncpg.Connection, Envelope, E], Awaitable[None]],
        ) -> Callable[[asyncpg.Connection, Envelope, E], Awaitable[None]]:
            if event.type in self.by_type:
                raise ValueError(f"two handlers for {event.type}")
            self.by_type[event.type] = Handler(event, fn)
            return fn

        return register


class Consumer:
    def __init__(
        self,
        service: str,
        pool: asyncpg.Pool,
        handlers: Handlers,
        exchange_name: str,
        retry_delays_ms: list[int],
        prefetch: int,
        publish_timeout: float,
    ) -> None:
        self.names = QueueNames(service)
        self._pool = pool
        self._handlers = handlers
        self._exchange_name = exchange_name
        self._delays = retry_delays_ms
        self._prefetch = prefetch
        self._publish_timeout = publish_timeout
        self._consumer_tag: str | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._exchange: AbstractExchange | None = None
        # Outcomes since start, for /metrics: handled, duplicate, retried, parked.
        self.outcomes: Counter[str] = Counter()

    async def start(self, connection: aio_pika.abc.AbstractRobustConnection) -> None:
        # Strong references to channel and queue: robust objects are only weakly held (aio-pika #536).
        self._channel = await connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        self._exchange = await declare_exchange(self._channel, self._exchange_name)
        self._queue = await declare_service_queues(
            self._channel, self._exchange, self.names, sorted(self._handlers.by_type), self._delays
        )
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def attached(self) -> bool:
        """Whether our consumer is registered on the live channel: the broker confirmed it (ConsumeOk),
        has not cancelled it, and a reconnect restored it (aio-pika #231, #334)."""
        if self._channel is None or self._channel.is_closed or self._consumer_tag is None:
            return False
        # Not the passive declare's consumer_count: RabbitMQ 3.10 reports unacked messages there for
        # quorum queues, so a busy consumer would look detached and an idle one too.
        underlay = await self._channel.get_underlay_channel()
        # aiormq keeps a channel's consumers by tag: added on ConsumeOk, removed on a broker's Cancel.
        consumers: dict[str, object] = getattr(underlay, "consumers", {})
        return not underlay.is_closed and self._consumer_tag in consumers

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        try:
            env = Envelope.model_validate_json(message.body)
            handler = self._handlers.by_type[env.type]
            event = handler.event.model_validate(env.payload)
        except (ValidationError, KeyError, ValueError) as exc:
            # Cannot succeed on retry: park at once, with the reason, for an operator to look at.
            await self._park(message, f"unreadable event: {exc}")
            return
        token = correlation_id.set(env.correlation_id)
        try:
            try:
                handled = await self._handle(env, handler, event)
            except Exception as exc:
                log.warning(
                    "handler failed",
                    extra={"event_type": env.type, "event_id": str(env.event_id), "error": repr(exc)},
                    exc_info=True,
                )
                await self._retry_or_park(message, repr(exc))
                return
            await self._ack(message)
            self.outcomes["handled" if handled else "duplicate"] += 1
            log.info(
                "event handled" if handled else "event already handled",
                extra={
                    "event_type": env.type,
                    "event_id": str(env.event_id),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        finally:
            correlation_id.reset(token)

    async def _handle(self, env: Envelope, handler: Handler[Any], event: Event) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO inbox (event_id, handler) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
                env.event_id,
                f"{self.names.service}:{env.type}",
            )
            if not first_time:
                return False
            await handler.run(conn, env, event)
            return True

    async def _retry_or_park(self, message: AbstractIncomingMessage, error: str) -> None:
        attempt = attempts_of(message)
        if attempt >= len(self._delays):
            await self._park(message, error)
            return
        await self._republish(message, self.names.retry(self._delays[attempt]), attempt + 1, error)
        await self._ack(message)
        self.outcomes["retried"] += 1

    async def _park(self, message: AbstractIncomingMessage, error: str) -> None:
        await self._republish(message, self.names.parked, attempts_of(message), error)
        await self._ack(message)
        self.outcomes["parked"] += 1
        log.error("event parked", extra={"message_id": message.message_id, "error": error})

    async def _republish(
        self, message: AbstractIncomingMessage, queue: str, attempt: int, error: str
    ) -> None:
        assert self._channel is not None
        copy = persistent_copy(
            message,
            {ATTEMPT_HEADER: attempt, "x-klaspost-last-error": error[:1000]},
            {"x-klaspost-routing-key": message.routing_key},
        )
        # Confirmed before the original is acked: if this fails the original is redelivered instead.
        await self._channel.default_exchange.publish(copy, routing_key=queue, timeout=self._publish_timeout)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except ChannelInvalidStateError:
            # The channel died after our commit: the broker redelivers and the inbox makes it a no-op.
            log.warning("ack lost with the channel", extra={"message_id": message.message_id})


def persistent_copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], defaults: dict[str, Any] | None = None
) -> aio_pika.Message:
    """The same event as a new persistent message, with ``headers`` set and ``defaults`` where unset."""
    merged = {**(defaults or {}), **dict(message.headers), **headers}
    return aio_pika.Message(
        body=message.body,
        headers=merged,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
    )


def attempts_of(message: AbstractIncomingMessage) -> int:
    value = message.headers.get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def parked_summary(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = message.headers
    try:
        env = json.loads(message.body)
    except ValueError:
        env = {}
    return {
        "message_id": message.message_id,
        "type": env.get("type", message.type),
        "routing_key": headers.get("x-klaspost-routing-key"),
        "attempts": headers.get(ATTEMPT_HEADER),
        "error": headers.get("x-klaspost-last-error"),
        "occurred_at": env.get("occurred_at"),
    }
