"""The consumer: one durable queue per service, an idempotent inbox, retries with growing delay,
then the parking queue.

Events are handled in small batches, one database transaction per batch: the transaction records
every event id of the batch in ``inbox`` with one INSERT and runs the handler of each event that was
new there, then commits; the messages are acked only after that commit. A redelivered event finds its
inbox row and has no second effect. When one handler fails, the whole transaction rolls back (its
inbox row included, so its retry is not taken for a duplicate); that event goes to a delay queue
(confirmed before the original is acked) and the rest of the batch is handled again without it.

Not savepoints per handler: they cost two more round trips per event, and failures are rare.

Batches form on their own: a message that arrives while no batch runs is handled at once (no added
latency at low load); what arrives while one runs waits and goes together. A committed batch is
acked with one ``multiple`` ack when no older message is still pending (``Unacked``).

A parked copy keeps no secret (issue 8: an access code or reset token only in the message that needs
it). The retry copies keep the body as it came (they must be handled as they were, and wait only
seconds), but the parking queue keeps a message until an operator acts. So the parked copy of an
event has the value of each of its type's ``secret_fields`` (and of any field named like a secret,
shared.logs.SECRET_FIELDS, in case its type is unknown) blanked to ``""``, and the
``x-klaspost-withheld`` header names them (``payload.access_code``). A body that is not a JSON
object with a payload object is parked without its body (header ``body``): where a secret sits in it
cannot be told, and it could never be handled anyway (the same bytes are unreadable again); the
message id, routing key, type and error stay for the operator. Replayed (``python -m
shared.deadletters replay``), such an event reaches its handler without its secret: the notifier then
mails nothing and says how to issue a new code or link in identity.
"""

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelInvalidStateError
from pydantic import ValidationError

from shared.bus import QueueNames, declare_exchange, declare_service_queues
from shared.envelope import Envelope, Event, event_model
from shared.logs import SECRET_FIELDS, correlation_id, withhold_secrets

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
ATTEMPT_HEADER = "x-klaspost-attempt"
WITHHELD_HEADER = "x-klaspost-withheld"  # what a parked copy's body does not carry (module docstring)
InboxKey = tuple[uuid.UUID, str]  # the inbox's primary key: (event_id, "service:event type")


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


@dataclass(eq=False)
class Delivery:
    """One readable message on its way through a batch."""

    message: AbstractIncomingMessage
    envelope: Envelope
    handler: Handler[Any]
    event: Event
    inbox_key: InboxKey
    received: float  # time.perf_counter() at receipt, for the log's duration_ms


class HandlerFailed(Exception):
    """Raised out of a batch's transaction to roll it back, naming the delivery whose handler failed."""

    def __init__(self, delivery: Delivery, error: Exception) -> None:
        super().__init__(repr(error))
        self.delivery = delivery
        self.error = error


class Unacked:
    """The delivery tags held unacked on the consumer's current channel.

    One ``basic.ack`` with ``multiple`` acks every tag up to its own, so it may settle a committed
    batch only when no older delivery is still pending: waiting, in another batch, or on its way to a
    delay queue (acked before its copy is confirmed, that one could be lost). After a reconnect the
    channel is new and its tags start again at 1; the old channel's deliveries cannot be acked at all.
    """

    def __init__(self) -> None:
        self._channel: object = None
        self._tags: set[int] = set()

    def hold(self, message: AbstractIncomingMessage) -> None:
        channel = message.channel  # open: the message has just arrived on it
        if channel is not self._channel:
            self._channel, self._tags = channel, set()
        self._tags.add(tag_of(message))

    def release(self, message: AbstractIncomingMessage, multiple: bool = False) -> None:
        tag = tag_of(message)
        self._tags = {t for t in self._tags if t > tag} if multiple else self._tags - {tag}

    def newest_if_alone(self, messages: list[AbstractIncomingMessage]) -> AbstractIncomingMessage | None:
        """The newest of ``messages`` if a ``multiple`` ack up to it would ack exactly them, else None."""
        try:
            if any(m.channel is not self._channel for m in messages):
                return None
        except ChannelInvalidStateError:  # that channel is closed: nothing of it can be acked
            return None
        newest = max(messages, key=tag_of)
        ours = {tag_of(m) for m in messages}
        return newest if all(t in ours for t in self._tags if t <= tag_of(newest)) else None


class Consumer:
    """Consumes the service's queue and hands each event to its handler, exactly once in effect.

    ``max_batch`` bounds the events of one transaction; ``in_flight`` is how many batches may run at
    once, each on its own pool connection.
    """

    def __init__(
        self,
        service: str,
        pool: asyncpg.Pool,
        handlers: Handlers,
        exchange_name: str,
        retry_delays_ms: list[int],
        prefetch: int,
        publish_timeout: float,
        max_batch: int = 32,
        in_flight: int = 2,
    ) -> None:
        self.names = QueueNames(service)
        self._pool = pool
        self._handlers = handlers
        self._exchange_name = exchange_name
        self._delays = retry_delays_ms
        self._prefetch = prefetch
        self._publish_timeout = publish_timeout
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._waiting: list[Delivery] = []
        self._batches: set[asyncio.Task[None]] = set()  # strong references: the loop holds tasks weakly
        self._unacked = Unacked()
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
        """Reads a message and queues it for a batch; an unreadable one is parked at once."""
        received = time.perf_counter()
        self._unacked.hold(message)
        try:
            env = Envelope.model_validate_json(message.body)
            handler = self._handlers.by_type[env.type]
            event = handler.event.model_validate(env.payload)
        except (ValidationError, KeyError, ValueError) as exc:
            # Cannot succeed on retry: park at once, with the reason, for an operator to look at.
            await self._park(message, f"unreadable event: {error_text(exc)}")
            return
        key = (env.event_id, f"{self.names.service}:{env.type}")
        self._waiting.append(Delivery(message, env, handler, event, key, received))
        self._start_batch()

    def _start_batch(self) -> None:
        """Starts a batch of the waiting deliveries: at once when none is running (no added latency at
        low load); while one runs, only a full batch, so that a busy consumer gathers large batches
        rather than many of one or two. A finished batch calls it again."""
        if not self._waiting or len(self._batches) >= self._in_flight:
            return
        if self._batches and len(self._waiting) < self._max_batch:
            return
        batch = self._take_batch()
        task = asyncio.create_task(self._handle_batch(batch), name=f"{self.names.service}-batch")
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._start_batch()

    def _take_batch(self) -> list[Delivery]:
        """Up to ``max_batch`` waiting deliveries, in arrival order, no event twice.

        A second copy of an event (a redelivery racing the first) stays for a later batch, where the
        inbox decides: one INSERT cannot tell which of two equal rows was the new one.
        """
        batch: list[Delivery] = []
        keys: set[InboxKey] = set()
        rest: list[Delivery] = []
        for delivery in self._waiting:
            if len(batch) < self._max_batch and delivery.inbox_key not in keys:
                batch.append(delivery)
                keys.add(delivery.inbox_key)
            else:
                rest.append(delivery)
        self._waiting = rest
        return batch

    async def _handle_batch(self, batch: list[Delivery]) -> None:
        """Commits the batch in one transaction, then acks it. A failing handler's event goes to retry
        (or parking) and the others are handled again without it, until a transaction commits.

        If the transaction fails as a whole (the connection broke, the commit failed), which event
        caused it is unknown: each is handled again on its own, so that only that one is retried.
        Handlers only write to the database, so running one again after a rollback is safe. Cancelled
        (at shutdown), the batch leaves its messages unacked: the broker delivers them again.
        """
        pending = list(batch)
        while pending:
            try:
                new = await self._commit(pending)
            except HandlerFailed as failure:
                pending.remove(failure.delivery)
                await self._failed(failure.delivery, failure.error)
                continue
            except Exception as exc:
                if len(pending) == 1:
                    await self._failed(pending[0], exc)
                else:
                    for delivery in pending:
                        await self._handle_batch([delivery])
                return
            await self._committed(pending, new)
            return

    async def _commit(self, batch: list[Delivery]) -> set[InboxKey]:
        """One transaction: record the batch's events in the inbox, run the handler of each new one,
        commit. Returns the inbox keys that were new (handled now); the rest were duplicates.

        Raises HandlerFailed, after the rollback, if a handler raised.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """INSERT INTO inbox (event_id, handler) SELECT * FROM unnest($1::uuid[], $2::text[])
                   ON CONFLICT DO NOTHING RETURNING event_id, handler""",
                [d.inbox_key[0] for d in batch],
                [d.inbox_key[1] for d in batch],
            )
            new = {(r["event_id"], r["handler"]) for r in rows}
            for delivery in batch:
                if delivery.inbox_key in new:
                    await run_handler(conn, delivery)
        return new

    async def _committed(self, batch: list[Delivery], new: set[InboxKey]) -> None:
        """After the commit: ack, count and log each event (a duplicate was handled before)."""
        await self._ack_all([d.message for d in batch])
        for delivery in batch:
            handled = delivery.inbox_key in new
            self.outcomes["handled" if handled else "duplicate"] += 1
            with correlated(delivery.envelope):
                log.info(
                    "event handled" if handled else "event already handled",
                    extra={
                        "event_type": delivery.envelope.type,
                        "event_id": str(delivery.envelope.event_id),
                        "duration_ms": round((time.perf_counter() - delivery.received) * 1000, 2),
                    },
                )

    async def _failed(self, delivery: Delivery, error: Exception) -> None:
        env = delivery.envelope
        with correlated(env):
            log.warning(
                "handler failed",
                extra={"event_type": env.type, "event_id": str(env.event_id), "error": repr(error)},
                exc_info=error,
            )
            await self._retry_or_park(delivery.message, error_text(error))

    async def _retry_or_park(self, message: AbstractIncomingMessage, error: str) -> None:
        attempt = attempts_of(message)
        if attempt >= len(self._delays):
            await self._park(message, error)
            return
        await self._republish(message, self.names.retry(self._delays[attempt]), attempt + 1, error)
        await self._ack(message)
        self.outcomes["retried"] += 1

    async def _park(self, message: AbstractIncomingMessage, error: str) -> None:
        await self._republish(message, self.names.parked, attempts_of(message), error, parked=True)
        await self._ack(message)
        self.outcomes["parked"] += 1
        log.error("event parked", extra={"message_id": message.message_id, "error": error})

    async def _republish(
        self, message: AbstractIncomingMessage, queue: str, attempt: int, error: str, parked: bool = False
    ) -> None:
        assert self._channel is not None
        headers: dict[str, Any] = {ATTEMPT_HEADER: attempt, "x-klaspost-last-error": error[:1000]}
        body = message.body
        if parked:
            body, withheld = without_secrets(message.body)
            if withheld:
                headers[WITHHELD_HEADER] = ",".join(withheld)
        copy = persistent_copy(message, headers, {"x-klaspost-routing-key": message.routing_key}, body=body)
        # Confirmed before the original is acked: if this fails the original is redelivered instead.
        await self._channel.default_exchange.publish(copy, routing_key=queue, timeout=self._publish_timeout)

    async def _ack_all(self, messages: list[AbstractIncomingMessage]) -> None:
        """Acks a committed batch: with one ``multiple`` ack when nothing older is pending, else each."""
        newest = self._unacked.newest_if_alone(messages)
        if newest is not None:
            await self._ack(newest, multiple=True)
            return
        for message in messages:
            await self._ack(message)

    async def _ack(self, message: AbstractIncomingMessage, multiple: bool = False) -> None:
        self._unacked.release(message, multiple)
        try:
            await message.ack(multiple=multiple)
        except ChannelInvalidStateError:
            # The channel died after our commit: the broker redelivers and the inbox makes it a no-op.
            log.warning("ack lost with the channel", extra={"message_id": message.message_id})


async def run_handler(conn: asyncpg.Connection, delivery: Delivery) -> None:
    """Runs one event's handler in the batch's transaction, logging under the event's correlation id.

    Raises HandlerFailed around the handler's error.
    """
    with correlated(delivery.envelope):
        try:
            await delivery.handler.run(conn, delivery.envelope, delivery.event)
        except Exception as exc:
            raise HandlerFailed(delivery, exc) from exc


@contextmanager
def correlated(env: Envelope) -> Iterator[None]:
    """Logs within carry the event's correlation id."""
    token = correlation_id.set(env.correlation_id)
    try:
        yield
    finally:
        correlation_id.reset(token)


def tag_of(message: AbstractIncomingMessage) -> int:
    """The delivery tag: always set on a consumed (not a fetched) message."""
    assert message.delivery_tag is not None
    return message.delivery_tag


def persistent_copy(
    message: AbstractIncomingMessage,
    headers: dict[str, Any],
    defaults: dict[str, Any] | None = None,
    body: bytes | None = None,
) -> aio_pika.Message:
    """The same event as a new persistent message, with ``headers`` set and ``defaults`` where unset;
    with ``body`` instead of the message's own if given."""
    merged = {**(defaults or {}), **dict(message.headers), **headers}
    return aio_pika.Message(
        body=message.body if body is None else body,
        headers=merged,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
    )


def without_secrets(body: bytes) -> tuple[bytes, list[str]]:
    """A parked copy's body and what it withholds (module docstring): the envelope with the value of
    each secret field of its payload blanked and their paths (``payload.access_code``); ``b""`` and
    ``["body"]`` for a body that is not a JSON object with a payload object; the body as it is and
    ``[]`` when it carries no secret."""
    try:
        env = json.loads(body)
    except ValueError:  # UnicodeDecodeError too
        return b"", ["body"]
    if not isinstance(env, dict) or not isinstance(env.get("payload"), dict):
        return b"", ["body"]
    secret = SECRET_FIELDS | _secret_fields_of(env)
    payload: dict[str, Any] = env["payload"]
    withheld = sorted(name for name, value in payload.items() if name in secret and value not in ("", None))
    if not withheld:
        return body, []
    env["payload"] = payload | dict.fromkeys(withheld, "")
    return json.dumps(env, ensure_ascii=False).encode(), [f"payload.{name}" for name in withheld]


def _secret_fields_of(env: dict[str, Any]) -> frozenset[str]:
    """The secret fields of the envelope's registered type; none for a type not known here."""
    type_, version = env.get("type"), env.get("version")
    if not isinstance(type_, str) or not isinstance(version, int):
        return frozenset()
    try:
        return event_model(type_, version).secret_fields
    except LookupError:
        return frozenset()


def error_text(error: BaseException) -> str:
    """What an operator is told of a failed or unreadable event (the ``x-klaspost-last-error`` header,
    the parking log line): never what the event carried. A pydantic error names each field, its problem
    and its type, without the input (``errors(include_input=False)``; its ``str`` prints the input,
    and the input of an unreadable invitation is the access code, of a reset the token, of broken JSON
    the whole body). Any other error as its ``repr``, with the value of a secret it names withheld
    (shared.logs.withhold_secrets): a handler's exception may quote an event it was given."""
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(whole)'}: {e['msg']} [type={e['type']}]"
            for e in error.errors(include_url=False, include_input=False, include_context=False)
        )
        return f"{error.error_count()} validation error(s) for {error.title}: {problems}"
    return withhold_secrets(repr(error))


def attempts_of(message: AbstractIncomingMessage) -> int:
    value = message.headers.get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def parked_summary(message: AbstractIncomingMessage) -> dict[str, Any]:
    """What ``deadletters list`` shows of a parked message: never its body. Its error is shown with
    secrets withheld, also that of a message parked before error_text kept inputs out of the header."""
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
        "error": _withheld(headers.get("x-klaspost-last-error")),
        "withheld": headers.get(WITHHELD_HEADER),
        "occurred_at": env.get("occurred_at"),
    }


def _withheld(error: object) -> object:
    if isinstance(error, bytes):
        error = error.decode("utf-8", "replace")
    return withhold_secrets(error) if isinstance(error, str) else error
