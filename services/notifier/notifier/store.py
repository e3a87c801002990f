"""Notifier's SQL."""

import uuid

import asyncpg

from notifier.domain import CLAIM_SECONDS


async def upsert_person(
    conn: asyncpg.Connection, person_id: uuid.UUID, school_id: uuid.UUID, email: str, name: str, locale: str
) -> None:
    await conn.execute(
        """INSERT INTO people (person_id, school_id, email, display_name, locale) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (person_id) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
             locale = EXCLUDED.locale""",
        person_id,
        school_id,
        email,
        name,
        locale,
    )


async def upsert_group(
    conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID, name: str
) -> None:
    await conn.execute(
        """INSERT INTO groups (group_id, school_id, name) VALUES ($1, $2, $3)
           ON CONFLICT (group_id) DO UPDATE SET name = EXCLUDED.name""",
        group_id,
        school_id,
        name,
    )


async def register_device(
    conn: asyncpg.Connection,
    device_id: uuid.UUID,
    person_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
) -> asyncpg.Record:
    """A browser re-subscribing keeps its endpoint: the row moves to the current person, with new keys."""
    row = await conn.fetchrow(
        """INSERT INTO devices (device_id, person_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (endpoint) DO UPDATE SET person_id = EXCLUDED.person_id, p256dh = EXCLUDED.p256dh,
             auth = EXCLUDED.auth
           RETURNING device_id, endpoint, created_at""",
        device_id,
        person_id,
        endpoint,
        p256dh,
        auth,
    )
    assert row is not None
    return row


async def devices_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT device_id, endpoint, created_at FROM devices WHERE person_id = $1 ORDER BY created_at",
        person_id,
    )
    return rows


async def delete_device(
    conn: asyncpg.Connection, device_id: uuid.UUID, person_id: uuid.UUID | None = None
) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM devices WHERE device_id = $1 AND ($2::uuid IS NULL OR person_id = $2) RETURNING true",
        device_id,
        person_id,
    )
    return bool(deleted)


async def create_post_notification(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    school_id: uuid.UUID | None,
    group_id: uuid.UUID,
    post_id: uuid.UUID,
    excerpt: str,
    correlation_id: str | None,
) -> int:
    """The notification and one delivery per guardian (email) and per guardian's device (push)."""
    await conn.execute(
        """INSERT INTO notifications (notification_id, school_id, group_id, post_id, excerpt, correlation_id)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        notification_id,
        school_id,
        group_id,
        post_id,
        excerpt,
        correlation_id,
    )
    emails = await conn.execute(
        """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel)
           SELECT gen_random_uuid(), $1, m.person_id, 'email'
           FROM memberships m JOIN people p USING (person_id)
           WHERE m.group_id = $2 AND m.role = 'guardian' AND m.active""",
        notification_id,
        group_id,
    )
    pushes = await conn.execute(
        """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel, device_id)
           SELECT gen_random_uuid(), $1, m.person_id, 'push', d.device_id
           FROM memberships m JOIN devices d USING (person_id)
           WHERE m.group_id = $2 AND m.role = 'guardian' AND m.active""",
        notification_id,
        group_id,
    )
    return int(emails.split()[-1]) + int(pushes.split()[-1])


async def claim_deliveries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE deliveries d SET next_attempt_at = now() + $2 * interval '1 second', attempts = d.attempts + 1
           FROM notifications n, people p, groups g
           WHERE d.delivery_id IN (
                 SELECT delivery_id FROM deliveries
                 WHERE status = 'pending' AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             AND n.notification_id = d.notification_id AND p.person_id = d.person_id AND g.group_id = n.group_id
           RETURNING d.delivery_id, d.notification_id, d.channel, d.device_id, d.attempts, n.post_id, n.excerpt,
                     n.correlation_id,
                     g.name AS group_name, p.email, p.display_name, p.locale,
                     (SELECT row_to_json(dv)::jsonb FROM (SELECT endpoint, p256dh, auth FROM devices
                      WHERE device_id = d.device_id) dv) AS device""",
        limit,
        CLAIM_SECONDS,
    )
    return rows


async def mark_sent(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL WHERE delivery_id = $1",
        delivery_id,
    )


async def mark_failed(conn: asyncpg.Connection, delivery_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', last_error = $2 WHERE delivery_id = $1", delivery_id, error
    )


async def retry_later(conn: asyncpg.Connection, delivery_id: uuid.UUID, seconds: float, error: str) -> None:
    await conn.execute(
        """UPDATE deliveries SET next_attempt_at = now() + $2 * interval '1 second', last_error = $3
           WHERE delivery_id = $1""",
        delivery_id,
        seconds,
        error,
    )
