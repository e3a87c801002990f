"""Operator command for parked events: list them, and replay them onto the service's queue once
the cause is fixed.

    python -m shared.deadletters list   --service posts [--limit 100]
    python -m shared.deadletters replay --service posts [--id MESSAGE_ID ...]

AMQP_URL is read from the environment, as in the services.
"""

import argparse
import asyncio
import json
import os
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.bus import QueueNames
from shared.consumer import ATTEMPT_HEADER, parked_summary, persistent_copy


async def _take(
    channel: aio_pika.abc.AbstractChannel, queue_name: str, limit: int
) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` parked messages, held unacked: closing the channel puts back what we keep."""
    queue = await channel.declare_queue(queue_name, passive=True)
    taken: list[AbstractIncomingMessage] = []
    while len(taken) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        taken.append(message)
    return taken


async def list_parked(amqp_url: str, service: str, limit: int = 100) -> list[dict[str, Any]]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        return [parked_summary(m) for m in await _take(channel, QueueNames(service).parked, limit)]


async def replay(
    amqp_url: str, service: str, message_ids: set[str] | None = None, limit: int = 10_000
) -> int:
    """Move parked messages (all, or those with the given ids) back onto the service's queue."""
    names = QueueNames(service)
    connection = await aio_pika.connect(amqp_url)
    replayed = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for message in await _take(channel, names.parked, limit):
            if message_ids is not None and message.message_id not in message_ids:
                continue
            await channel.default_exchange.publish(
                persistent_copy(message, {ATTEMPT_HEADER: 0}),
                routing_key=names.main,
                timeout=10,
            )
            await message.ack()
            replayed += 1
    return replayed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shared.deadletters", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--service", required=True, choices=["identity", "posts", "media", "notifier"])
    parser.add_argument("--id", action="append", dest="ids", help="replay only this message id (repeatable)")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if args.command == "list":
        for row in asyncio.run(list_parked(url, args.service, args.limit)):
            print(json.dumps(row, default=str))
    else:
        count = asyncio.run(replay(url, args.service, set(args.ids) if args.ids else None))
        print(json.dumps({"replayed": count}))


if __name__ == "__main__":
    main()
