"""Each provider is claimed by its own free send slots: a backlog at one push service (APNs down,
every slot of it waiting) never keeps a Web Push, FCM or email delivery from being claimed."""

import uuid
from collections import Counter
from typing import Any

from notifier import store


async def test_each_provider_is_claimed_by_its_own_free_slots(notifier: Any) -> None:
    async with notifier.pool.acquire() as conn:
        # One transaction, rolled back: the running notifier never sees (or sends) these rows.
        transaction = conn.transaction()
        await transaction.start()
        try:
            person_id, notification_id = uuid.uuid4(), uuid.uuid4()
            await store.upsert_person(conn, person_id, "ouder@ouders.test", "Ouder", "nl", 1)
            await conn.execute(
                """INSERT INTO notifications (notification_id, group_id, post_id, excerpt)
                   VALUES ($1, $2, $3, 'Morgen gym')""",
                notification_id,
                uuid.uuid4(),
                uuid.uuid4(),
            )
            devices = [
                (
                    await store.register_native_device(
                        conn, uuid.uuid4(), person_id, "apns", "ab" * 31 + f"{i:02x}"
                    )
                )["device_id"]
                for i in range(12)
            ]
            devices += [
                (
                    await store.register_native_device(
                        conn, uuid.uuid4(), person_id, "fcm", f"fcm-token-{i}" * 4
                    )
                )["device_id"]
                for i in range(3)
            ]
            for i in range(3):
                row = await store.register_device(
                    conn, uuid.uuid4(), person_id, f"https://127.0.0.1/push/{i}", "p" * 87, "a" * 22
                )
                assert row is not None
                devices.append(row["device_id"])
            # Made as any code makes them, without naming the provider: the trigger fills it in.
            await conn.executemany(
                """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel, device_id)
                   VALUES (gen_random_uuid(), $1, $2, 'push', $3)""",
                [(notification_id, person_id, device) for device in devices],
            )
            await conn.execute(
                """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel)
                   VALUES (gen_random_uuid(), $1, $2, 'email')""",
                notification_id,
                person_id,
            )
            made = await conn.fetch(
                "SELECT provider, count(*) AS n FROM deliveries WHERE notification_id = $1 GROUP BY 1",
                notification_id,
            )
            assert {r["provider"]: r["n"] for r in made} == {"apns": 12, "fcm": 3, "webpush": 3, "smtp": 1}

            # APNs' slots are all busy: the others are claimed all the same, each within its own free slots.
            claimed = await store.claim_deliveries(conn, {"smtp": 4, "webpush": 2, "fcm": 8, "apns": 0}, 5.0)
            assert Counter(r["provider"] for r in claimed) == {"smtp": 1, "webpush": 2, "fcm": 3}
            kinds: dict[str, Any] = {r["provider"]: r["device"] for r in claimed}
            assert kinds["fcm"]["kind"] == "fcm"
            assert kinds["fcm"]["token"].startswith("fcm-token-")
            assert kinds["webpush"]["kind"] == "webpush"
            assert kinds["smtp"] is None
            claimed = await store.claim_deliveries(conn, {"smtp": 4, "webpush": 8, "fcm": 8, "apns": 8}, 5.0)
            assert Counter(r["provider"] for r in claimed) == {"webpush": 1, "apns": 8}
        finally:
            await transaction.rollback()


async def test_a_device_moving_to_another_account_drops_what_was_pending_for_the_previous_owner(
    notifier: Any,
) -> None:
    async with notifier.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            owner, newcomer, notification_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                """INSERT INTO notifications (notification_id, group_id, post_id, excerpt)
                   VALUES ($1, $2, $3, 'Morgen gym')""",
                notification_id,
                uuid.uuid4(),
                uuid.uuid4(),
            )
            first = await store.register_native_device(
                conn, uuid.uuid4(), owner, "fcm", "shared-tablet-token" * 3
            )
            assert first["moved"] is False
            await conn.execute(
                """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel, device_id)
                   VALUES (gen_random_uuid(), $1, $2, 'push', $3)""",
                notification_id,
                owner,
                first["device_id"],
            )
            again = await store.register_native_device(
                conn, uuid.uuid4(), owner, "fcm", "shared-tablet-token" * 3
            )
            assert (again["device_id"], again["moved"]) == (first["device_id"], False)
            moved = await store.register_native_device(
                conn, uuid.uuid4(), newcomer, "fcm", "shared-tablet-token" * 3
            )
            assert (moved["device_id"], moved["moved"]) == (first["device_id"], True)
            row = await conn.fetchrow(
                "SELECT status, last_error FROM deliveries WHERE device_id = $1", first["device_id"]
            )
            assert row["status"] == "failed"
            assert "moved to another account" in row["last_error"]
            assert (
                await conn.fetchval("SELECT person_id FROM devices WHERE device_id = $1", first["device_id"])
                == newcomer
            )
        finally:
            await transaction.rollback()
