"""RabbitMQ connections and topology: one topic exchange for all events; per service one durable
quorum queue, delay queues for retries and a parking queue for what keeps failing."""

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection


@dataclass(frozen=True)
class QueueNames:
    service: str

    @property
    def main(self) -> str:
        return self.service

    @property
    def parked(self) -> str:
        return f"{self.service}.parked"

    def retry(self, delay_ms: int) -> str:
        # Named by delay: a queue's TTL cannot change once declared, a new delay gets a new queue.
        return f"{self.service}.retry.{delay_ms}ms"


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A robust connection (reconnects on its own); publishing and consuming get one each."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name}, heartbeat=10)


async def publisher_channel(conn: AbstractRobustConnection) -> AbstractRobustChannel:
    # Confirms on (await = broker has it), and an unroutable mandatory message raises instead of vanishing.
    channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
    assert isinstance(channel, AbstractRobustChannel)
    return channel


async def declare_exchange(channel: aio_pika.abc.AbstractChannel, name: str) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_service_queues(
    channel: aio_pika.abc.AbstractChannel,
    exchange: AbstractExchange,
    names: QueueNames,
    routing_keys: list[str],
    retry_delays_ms: list[int],
) -> AbstractQueue:
    queue = await channel.declare_queue(names.main, durable=True, arguments={"x-queue-type": "quorum"})
    for key in routing_keys:
        await queue.bind(exchange, routing_key=key)
    for delay in retry_delays_ms:
        # A message waits here for its delay, then dead-letters back onto the service's main queue.
        await channel.declare_queue(
            names.retry(delay),
            durable=True,
            arguments={
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.main,
            },
        )
    await channel.declare_queue(names.parked, durable=True, arguments={"x-queue-type": "quorum"})
    return queue
