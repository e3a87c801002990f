"""A group of parents and a post to it, written straight into a notifier's database the way its
event handlers write them (people, group and memberships copies; the notification and its
deliveries), then the delivery worker is woken."""

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from notifier import store
from notifier.delivery import NOTIFY_CHANNEL


async def post_to_parents(
    pool: asyncpg.Pool,
    count: int,
    domain: str = "ouders.test",
    subscribe: Callable[[], dict[str, Any]] | None = None,
) -> list[str]:
    """count parents with one email address each at domain (and, with ``subscribe``, one push device
    each: the browser subscription it returns, or an app's ``{"kind": "fcm" | "apns", "token"}``, and
    the preference to get new posts by email and push), and a post to their group; the addresses."""
    group_id, addresses = uuid.uuid4(), []
    async with pool.acquire() as conn, conn.transaction():
        await store.upsert_group(conn, group_id, uuid.uuid4(), "Groep 8", 1)
        for i in range(count):
            person_id, address = uuid.uuid4(), f"ouder{i}-{uuid.uuid4().hex[:6]}@{domain}"
            await store.upsert_person(conn, person_id, address, f"Ouder {i}", "nl", 1)
            await conn.execute(
                """INSERT INTO memberships (group_id, person_id, role, active, revision)
                   VALUES ($1, $2, 'guardian', true, 1)""",
                group_id,
                person_id,
            )
            addresses.append(address)
            if subscribe is not None:
                # Email and push both (the default with a device is push only).
                await conn.execute(
                    """INSERT INTO preferences (person_id, category, channel, timing)
                       VALUES ($1, 'posts', 'both', 'immediate')""",
                    person_id,
                )
                subscription = subscribe()
                if subscription.get("kind", "webpush") != "webpush":
                    # An app's device: {"kind": "fcm" or "apns", "token": ...}.
                    await store.register_native_device(
                        conn, uuid.uuid4(), person_id, subscription["kind"], subscription["token"]
                    )
                    continue
                await store.register_device(
                    conn,
                    uuid.uuid4(),
                    person_id,
                    subscription["endpoint"],
                    subscription["keys"]["p256dh"],
                    subscription["keys"]["auth"],
                )
        await store.create_post_notification(
            conn, uuid.uuid4(), None, group_id, uuid.uuid4(), "Morgen schoolreis!", None
        )
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return addresses
