"""Operator command for parked events: list them, and replay them onto the service's queue once
the cause is fixed.

    python -m shared.deadletters list     --service posts [--limit 100]
    python -m shared.deadletters replay   --service posts [--id MESSAGE_ID ...]
    python -m shared.deadletters withhold --service posts

AMQP_URL is read from the environment, as in the services.

A parked copy carries no secret (shared/consumer.py: an access code or reset token is blanked and the
``x-klaspost-withheld`` header names it), so a replayed invitation or password link reaches the
notifier without its code or token: the notifier mails nothing and logs what to do in identity (a
new access code, a new reset link). ``withhold`` does the same to messages parked before parked
copies withheld their secrets.
"""

import argparse
import asyncio
import json
import os
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.bus import QueueNames
from shared.consumer import ATTEMPT_HEADER, WITHHELD_HEADER, parked_summary, persistent_copy, without_secrets


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


async def withhold(amqp_url: str, service: str, limit: int = 10_000) -> int:
    """Park again, without their secrets, the parked messages that still carry one (parked before
    parked copies withheld them). How many."""
    names = QueueNames(service)
    connection = await aio_pika.connect(amqp_url)
    changed = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for message in await _take(channel, names.parked, limit):
            body, withheld = without_secrets(message.body)
            if not withheld or WITHHELD_HEADER in message.headers:
                continue  # closing the channel puts it back as it is
            copy = persistent_copy(message, {WITHHELD_HEADER: ",".join(withheld)}, body=body)
            await channel.default_exchange.publish(copy, routing_key=names.parked, timeout=10)
            await message.ack()
            changed += 1
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shared.deadletters", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["list", "replay", "withhold"])
    parser.add_argument("--service", required=True, choices=["identity", "posts", "media", "notifier"])
    parser.add_argument("--id", action="append", dest="ids", help="replay only this message id (repeatable)")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    if args.command == "list":
        for row in asyncio.run(list_parked(url, args.service, args.limit)):
            print(json.dumps(row, default=str))
    elif args.command == "withhold":
        print(json.dumps({"withheld": asyncio.run(withhold(url, args.service))}))
    else:
        count = asyncio.run(replay(url, args.service, set(args.ids) if args.ids else None))
        print(json.dumps({"replayed": count}))


if __name__ == "__main__":
    main()
