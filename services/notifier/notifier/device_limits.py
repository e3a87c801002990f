"""How many push devices a person may have, and how often they may register one (issue 8).

Without limits one token registered 500 fake FCM tokens in a second: every post to that parent's
group then meant 500 sends. Two rules:

- At most ``devices_per_person`` devices (default 20). Registering one more removes the person's
  least recently registered device rather than refusing: a parent with a new phone expects it to
  just work, and the device that goes is the one most likely to be gone (a phone given away, a
  browser profile long deleted); refusing would leave them to find and delete an old device first,
  in settings they rarely open, while the new phone silently gets nothing. A browser or app
  registering again (same subscription and keys, same token) counts as registered now: apps
  re-register on every start, so the device in daily use is never the one that goes.
- At most ``device_registrations_per_hour`` registrations per person in any hour, new or repeated
  (429 with Retry-After). Counted in PostgreSQL (``device_registrations``), so every replica counts
  the same registrations and a restart forgets none; two registrations at once take turns (a lock per
  person for the transaction), so at the limit only one of them passes.
"""

import math
import uuid

import asyncpg

from notifier import store
from shared.errors import TooManyRequests

# How many expired registration rows (of anyone) a registration deletes on its way: more than it
# adds, so the table never holds much more than the last hour's.
_SWEEP = 100


class RegistrationLimiter:
    """``await check(conn, person_id)`` counts one more registration of the person, or raises
    TooManyRequests with the whole seconds until the oldest in the hour leaves it."""

    def __init__(self, per_hour: int) -> None:
        self._per_hour = per_hour

    async def check(self, conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
        async with conn.transaction():
            # One person's registrations take turns: the count below then sees every other one's row.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 6))", person_id)
            row = await conn.fetchrow(
                """WITH expired AS (
                       DELETE FROM device_registrations WHERE ctid IN (
                           SELECT ctid FROM device_registrations WHERE registered_at <= now() - interval '1 hour'
                           LIMIT $3 FOR UPDATE SKIP LOCKED)),
                   recent AS (
                       SELECT count(*) AS n, min(registered_at) AS oldest FROM device_registrations
                       WHERE person_id = $1 AND registered_at > now() - interval '1 hour'),
                   counted AS (
                       INSERT INTO device_registrations (person_id) SELECT $1 FROM recent WHERE n < $2)
                   SELECT n < $2 AS allowed,
                          extract(epoch FROM oldest + interval '1 hour' - now())::float8 AS wait
                   FROM recent""",
                person_id,
                self._per_hour,
                _SWEEP,
            )
        assert row is not None
        if not row["allowed"]:
            raise TooManyRequests(
                f"at most {self._per_hour} device registrations an hour; try again later",
                retry_after=max(1, math.ceil(row["wait"])),
            )


async def register_webpush(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
    keep: int,
) -> asyncpg.Record | None:
    """store.register_device (None: another person's endpoint with other keys), marked as registered
    now, and the person's devices cut to ``keep``."""
    async with conn.transaction():
        row = await store.register_device(conn, uuid.uuid4(), person_id, endpoint, p256dh, auth)
        if row is not None:
            await _registered_now(conn, person_id, row["device_id"], keep)
    return row


async def register_native(
    conn: asyncpg.Connection, person_id: uuid.UUID, kind: str, token: str, keep: int
) -> asyncpg.Record:
    """store.register_native_device (an FCM or APNs token), marked as registered now, and the
    person's devices cut to ``keep``."""
    async with conn.transaction():
        row = await store.register_native_device(conn, uuid.uuid4(), person_id, kind, token)
        await _registered_now(conn, person_id, row["device_id"], keep)
    return row


async def _registered_now(
    conn: asyncpg.Connection, person_id: uuid.UUID, device_id: uuid.UUID, keep: int
) -> None:
    """The device registered now (new or again); at most ``keep`` devices for the person: this one and
    the most recently registered others, the rest removed as if the person had deleted them. Two
    registrations of one person at once take turns here (a lock for the transaction), so the second
    one's DELETE, a statement of its own, sees the first one's device and the cap holds."""
    await conn.execute("UPDATE devices SET registered_at = clock_timestamp() WHERE device_id = $1", device_id)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 8))", person_id)
    dropped = await conn.fetch(
        """DELETE FROM devices WHERE device_id IN (
               SELECT device_id FROM devices WHERE person_id = $1
               ORDER BY device_id = $2 DESC, registered_at DESC, device_id OFFSET $3)
           RETURNING device_id""",
        person_id,
        device_id,
        keep,
    )
    if dropped:
        await store.notify_removed(conn, [row["device_id"] for row in dropped])
