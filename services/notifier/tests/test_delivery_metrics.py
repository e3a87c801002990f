"""/metrics reads delivery figures without scanning the tables: a year of sent deliveries and mails
does not make the backlog or the recent counts slower to read."""

import uuid
from typing import Any

from notifier.delivery_metrics import DELIVERY_COUNTS, MAIL_COUNTS, WINDOW_SECONDS, delivery_metrics

OLD_ROWS = 40_000


async def test_metrics_counts_use_indexes_not_a_scan_of_every_row(notifier: Any) -> None:
    notification_id = uuid.uuid4()
    async with notifier.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO notifications (notification_id, group_id, post_id, excerpt, created_at)
               VALUES ($1, $2, $3, 'oud', now() - interval '200 days')""",
            notification_id,
            uuid.uuid4(),
            uuid.uuid4(),
        )
        # Old history: sent long ago; and a small backlog of today.
        await conn.execute(
            """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel, status, created_at)
               SELECT gen_random_uuid(), $1, gen_random_uuid(), 'email', 'sent',
                      now() - interval '2 days' - i * interval '10 minutes'
               FROM generate_series(1, $2) AS i""",
            notification_id,
            OLD_ROWS,
        )
        await conn.execute(
            """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel)
               SELECT gen_random_uuid(), $1, gen_random_uuid(), 'email' FROM generate_series(1, 3)""",
            notification_id,
        )
        await conn.execute(
            """INSERT INTO mails (mail_id, kind, to_email, context, status, created_at)
               SELECT gen_random_uuid(), 'welcome', 'ouder@ouders.test', '{}', 'sent',
                      now() - interval '2 days' - i * interval '10 minutes'
               FROM generate_series(1, $1) AS i""",
            OLD_ROWS,
        )
    try:
        async with notifier.pool.acquire() as conn:
            await conn.execute("ANALYZE deliveries")
            await conn.execute("ANALYZE mails")
            for query, table in ((DELIVERY_COUNTS, "deliveries"), (MAIL_COUNTS, "mails")):
                plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", WINDOW_SECONDS))
                assert f"Seq Scan on {table}" not in plan, plan
        lines = await delivery_metrics(notifier.runner.app)
        figures = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
        # The backlog is all of it; the old sent rows are outside the window.
        assert int(figures['klaspost_notifier_deliveries{channel="email",status="pending"}']) >= 3
        assert int(figures['klaspost_notifier_deliveries{channel="email",status="sent"}']) < OLD_ROWS
        assert 'klaspost_notifier_provider_sent_total{provider="apns"}' in figures
    finally:
        async with notifier.pool.acquire() as conn:
            await conn.execute("DELETE FROM deliveries WHERE notification_id = $1", notification_id)
            await conn.execute("DELETE FROM notifications WHERE notification_id = $1", notification_id)
            await conn.execute("DELETE FROM mails WHERE to_email = 'ouder@ouders.test' AND kind = 'welcome'")
