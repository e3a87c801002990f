"""Trimming the shared tables: sent outbox rows and old inbox rows are kept for a while (for an
operator's questions and to recognise late redeliveries), then removed."""

import asyncpg


async def trim_outbox_and_inbox(conn: asyncpg.Connection, outbox_days: int, inbox_days: int) -> None:
    await conn.execute("DELETE FROM outbox WHERE published_at < now() - $1 * interval '1 day'", outbox_days)
    # Longer than any redelivery can be late: the inbox is what makes a redelivered event a no-op.
    await conn.execute("DELETE FROM inbox WHERE handled_at < now() - $1 * interval '1 day'", inbox_days)
