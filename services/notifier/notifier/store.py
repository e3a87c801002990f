"""Notifier's SQL."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

from notifier import message_store
from notifier.domain import CLAIM_SECONDS

# What the notifiers' Deliverers LISTEN on (shared.drain.Drainer). An empty payload: new work is due.
# "cancelled <notification id> ...": deliveries of those notifications are no longer pending, and
# "removed <device id>": that device is gone; a send of them that a Deliverer queued must not start
# (delivery.Deliverer.notified). Sent in the cancelling transaction, so delivered at its commit.
NOTIFY_CHANNEL = "notifier_deliveries"
# Notification ids per NOTIFY: a payload must stay under 8,000 bytes (PostgreSQL's NOTIFY).
_IDS_PER_NOTIFY = 100


async def upsert_person(
    conn: asyncpg.Connection, person_id: uuid.UUID, email: str, name: str, locale: str, revision: int
) -> None:
    """Keep an account's contact details, unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO people (person_id, email, display_name, locale, revision) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (person_id) DO UPDATE SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
             locale = EXCLUDED.locale, revision = EXCLUDED.revision
           WHERE people.revision < EXCLUDED.revision""",
        person_id,
        email,
        name,
        locale,
        revision,
    )


async def upsert_school(
    conn: asyncpg.Connection, school_id: uuid.UUID, name: str, time_zone: str, locale: str, revision: int
) -> None:
    """Keep a school's name, time zone and language, unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO schools (school_id, name, time_zone, locale, revision) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (school_id) DO UPDATE SET name = EXCLUDED.name, time_zone = EXCLUDED.time_zone,
             locale = EXCLUDED.locale, revision = EXCLUDED.revision
           WHERE schools.revision < EXCLUDED.revision""",
        school_id,
        name,
        time_zone,
        locale,
        revision,
    )


async def upsert_group(
    conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID, name: str, revision: int
) -> None:
    """Keep a group's name, unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO groups (group_id, school_id, name, revision) VALUES ($1, $2, $3, $4)
           ON CONFLICT (group_id) DO UPDATE SET name = EXCLUDED.name,
             revision = EXCLUDED.revision
           WHERE groups.revision < EXCLUDED.revision""",
        group_id,
        school_id,
        name,
        revision,
    )


async def queue_mail(
    conn: asyncpg.Connection,
    mail_id: uuid.UUID,
    kind: str,
    to_email: str,
    locale: str,
    context: dict[str, Any],
    secret: str,
    school_id: uuid.UUID | None,
    person_id: uuid.UUID | None,
    correlation_id: str | None,
) -> bool:
    """Record a one-off mail; True when it now waits to be sent. False when a mail of this id
    exists already (a redelivered event), or when there is no secret to send: that row is kept as
    failed, for an operator to see."""
    status, error = ("pending", None) if secret else ("failed", "the event carried no code or token")
    created = await conn.fetchval(
        """INSERT INTO mails (mail_id, kind, to_email, locale, context, secret, school_id, person_id,
                              correlation_id, status, last_error)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (mail_id) DO NOTHING
           RETURNING status = 'pending'""",
        mail_id,
        kind,
        to_email,
        locale,
        context,
        secret or None,
        school_id,
        person_id,
        correlation_id,
        status,
        error,
    )
    return bool(created)


async def register_device(
    conn: asyncpg.Connection,
    device_id: uuid.UUID,
    person_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
) -> asyncpg.Record | None:
    """The device row for this Web Push subscription, or None when its endpoint is another person's
    device and the keys differ: then nothing changes.

    A known endpoint is the same browser re-subscribing. Its owner may give it new keys (the browser
    rotated them); another person may take it over only with the very same keys, i.e. from the
    browser itself (logged in as someone else), never with just the endpoint URL. Row: device_id,
    kind, endpoint, created_at, moved (whether it belonged to another person until now).
    """
    async with conn.transaction():
        before = await conn.fetchval("SELECT person_id FROM devices WHERE endpoint = $1 FOR UPDATE", endpoint)
        row: asyncpg.Record | None = await conn.fetchrow(
            """INSERT INTO devices (device_id, person_id, kind, endpoint, p256dh, auth)
               VALUES ($1, $2, 'webpush', $3, $4, $5)
               ON CONFLICT (endpoint) DO UPDATE SET person_id = EXCLUDED.person_id, p256dh = EXCLUDED.p256dh,
                 auth = EXCLUDED.auth
               WHERE devices.person_id = EXCLUDED.person_id
                  OR (devices.p256dh = EXCLUDED.p256dh AND devices.auth = EXCLUDED.auth)
               RETURNING device_id, kind, endpoint, created_at, $6::uuid IS NOT NULL AND $6 <> $2 AS moved""",
            device_id,
            person_id,
            endpoint,
            p256dh,
            auth,
            before,
        )
        if row is not None and row["moved"]:
            await _cancel_moved(conn, row["device_id"], person_id)
    return row


async def register_native_device(
    conn: asyncpg.Connection,
    device_id: uuid.UUID,
    person_id: uuid.UUID,
    kind: str,
    token: str,
) -> asyncpg.Record:
    """The device row for this FCM or APNs token (kind "fcm" or "apns"), made or moved to person_id.

    The provider hands a token only to the app on that one device, and this API never shows it: who
    sends it holds the device. So a token registered before by another person moves to the caller
    (one phone, another parent logged in) — not silently: the row says ``moved``, the API answers it
    and a log line records it, and pushes still pending to the previous owner on that device are
    cancelled (they are not for this person). Row: device_id, kind, endpoint (NULL), created_at, moved.
    """
    async with conn.transaction():
        before = await conn.fetchval(
            "SELECT person_id FROM devices WHERE kind = $1 AND token = $2 FOR UPDATE", kind, token
        )
        row: asyncpg.Record = await conn.fetchrow(
            """INSERT INTO devices (device_id, person_id, kind, token) VALUES ($1, $2, $3, $4)
               ON CONFLICT (kind, token) WHERE token IS NOT NULL DO UPDATE SET person_id = EXCLUDED.person_id
               RETURNING device_id, kind, endpoint, created_at, $5::uuid IS NOT NULL AND $5 <> $2 AS moved""",
            device_id,
            person_id,
            kind,
            token,
            before,
        )
        if row["moved"]:
            await _cancel_moved(conn, row["device_id"], person_id)
    return row


async def _cancel_moved(conn: asyncpg.Connection, device_id: uuid.UUID, person_id: uuid.UUID) -> None:
    """A device that moved to person_id gets none of what was still pending (or held for quiet hours
    or a later moment) for its previous owner."""
    await conn.execute(
        """UPDATE deliveries SET status = 'failed', last_error = 'cancelled: the device moved to another account'
           WHERE device_id = $1 AND person_id <> $2 AND status IN ('pending', 'held')""",
        device_id,
        person_id,
    )
    # Pushes for the previous owner that a notifier already claimed and queued are not sent either.
    await notify_removed(conn, [device_id])


async def devices_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT device_id, kind, endpoint, created_at, false AS moved FROM devices WHERE person_id = $1
           ORDER BY created_at""",
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
    if deleted:
        await notify_removed(conn, [device_id])
    return bool(deleted)


async def notify_removed(conn: asyncpg.Connection, device_ids: list[uuid.UUID]) -> None:
    """Tell every replica's Deliverer (at commit) that these devices are gone, or no longer the same
    person's: pushes to them it already claimed and queued are not sent (delivery.Deliverer.notified)."""
    for start in range(0, len(device_ids), _IDS_PER_NOTIFY):
        names = " ".join(str(d) for d in device_ids[start : start + _IDS_PER_NOTIFY])
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"removed {names}")


async def create_post_notification(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    school_id: uuid.UUID | None,
    group_id: uuid.UUID,
    post_id: uuid.UUID,
    excerpt: str,
    correlation_id: str | None,
    *,
    urgent: bool = False,
    author_id: uuid.UUID | None = None,
    title: str = "",
    now: datetime | None = None,
) -> int:
    """The notification and the deliveries to every guardian of the group but the author, by each
    one's preferences (message_store.fan_out: email, pushes, held for quiet hours or the digest; an
    urgent post to every channel at once). How many deliveries; 0 when the post had one already."""
    created = await message_store.create_notification(
        conn,
        notification_id,
        "new_post",
        school_id=school_id,
        group_id=group_id,
        post_id=post_id,
        excerpt=excerpt,
        context={"title": title},
        urgent=urgent,
        correlation_id=correlation_id,
    )
    if not created:
        return 0
    guardians = [p for p in await message_store.group_guardians(conn, group_id) if p != author_id]
    return await message_store.fan_out(
        conn,
        notification_id,
        guardians,
        "posts",
        school_id=school_id,
        default_zone=message_store.DEFAULT_ZONE,
        now=now or datetime.now(UTC),
        urgent=urgent,
    )


PROVIDERS = ("smtp", "webpush", "fcm", "apns")


async def claim_deliveries(
    conn: asyncpg.Connection, limits: Mapping[str, int], lease_seconds: float = CLAIM_SECONDS
) -> list[asyncpg.Record]:
    """Due pending deliveries, up to ``limits[provider]`` of each provider ("smtp", "webpush", "fcm",
    "apns"; each by its own free send slots, so one never waits behind another), each claimed for
    lease_seconds (its attempts counted up: the new number identifies this claim), with what their
    messages need."""
    rows: list[asyncpg.Record] = await conn.fetch(
        # One CTE per provider, each with its own limit ($1-$4 in PROVIDERS' order), through
        # deliveries_due_provider; the update finds the claimed rows by key (= ANY(ARRAY(...))).
        """WITH smtp AS (SELECT delivery_id FROM deliveries WHERE status = 'pending' AND provider = 'smtp'
                         AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED),
                webpush AS (SELECT delivery_id FROM deliveries WHERE status = 'pending' AND provider = 'webpush'
                            AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                fcm AS (SELECT delivery_id FROM deliveries WHERE status = 'pending' AND provider = 'fcm'
                        AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED),
                apns AS (SELECT delivery_id FROM deliveries WHERE status = 'pending' AND provider = 'apns'
                         AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
           UPDATE deliveries d SET next_attempt_at = now() + $5 * interval '1 second', attempts = d.attempts + 1
           FROM notifications n, people p
           WHERE d.delivery_id = ANY(ARRAY(SELECT delivery_id FROM smtp UNION ALL SELECT delivery_id FROM webpush
                                           UNION ALL SELECT delivery_id FROM fcm UNION ALL SELECT delivery_id FROM apns))
             AND n.notification_id = d.notification_id AND p.person_id = d.person_id
           RETURNING d.delivery_id, d.notification_id, d.channel, d.provider, d.device_id, d.attempts,
                     n.post_id, n.excerpt, n.correlation_id, d.person_id, n.kind, n.context, n.urgent,
                     (SELECT name FROM groups WHERE group_id = n.group_id) AS group_name,
                     (SELECT time_zone FROM schools WHERE school_id = n.school_id) AS time_zone,
                     p.email, p.display_name, p.locale,
                     (SELECT row_to_json(dv)::jsonb FROM (SELECT kind, endpoint, p256dh, auth, token FROM devices
                      WHERE device_id = d.device_id) dv) AS device""",
        *(limits.get(provider, 0) for provider in PROVIDERS),
        lease_seconds,
    )
    return rows


_RENEW = {
    "deliveries": """UPDATE deliveries t SET next_attempt_at = now() + $3 * interval '1 second'
        FROM unnest($1::uuid[], $2::int[]) AS h(id, attempts)
        WHERE t.delivery_id = h.id AND t.attempts = h.attempts AND t.status = 'pending'
        RETURNING t.delivery_id AS id""",
    "mails": """UPDATE mails t SET next_attempt_at = now() + $3 * interval '1 second'
        FROM unnest($1::uuid[], $2::int[]) AS h(id, attempts)
        WHERE t.mail_id = h.id AND t.attempts = h.attempts AND t.status = 'pending'
        RETURNING t.mail_id AS id""",
}


async def renew_claims(
    conn: asyncpg.Connection, held: list[tuple[str, uuid.UUID, int]], lease_seconds: float
) -> set[tuple[str, uuid.UUID]]:
    """Extend a worker's claims by lease_seconds from now. held: (table "deliveries" or "mails", id,
    the attempt number its claim gave the row). Returns the (table, id) renewed: a row another worker
    re-claimed since (attempts moved on), or no longer pending, is not."""
    renewed: set[tuple[str, uuid.UUID]] = set()
    for table, statement in _RENEW.items():
        ids = [key for t, key, _ in held if t == table]
        if ids:
            attempts = [n for t, _, n in held if t == table]
            rows = await conn.fetch(statement, ids, attempts, lease_seconds)
            renewed.update((table, row["id"]) for row in rows)
    return renewed


_RELEASE = {
    "deliveries": """UPDATE deliveries t SET next_attempt_at = now()
        FROM unnest($1::uuid[], $2::int[]) AS h(id, attempts)
        WHERE t.delivery_id = h.id AND t.attempts = h.attempts AND t.status = 'pending'""",
    "mails": """UPDATE mails t SET next_attempt_at = now()
        FROM unnest($1::uuid[], $2::int[]) AS h(id, attempts)
        WHERE t.mail_id = h.id AND t.attempts = h.attempts AND t.status = 'pending'""",
}


async def release_claims(conn: asyncpg.Connection, held: list[tuple[str, uuid.UUID, int]]) -> int:
    """A stopping worker's claims (as for renew_claims) made due now, so another takes them at once;
    a row re-claimed meanwhile (attempts moved on) or no longer pending is left alone. How many."""
    released = 0
    for table, statement in _RELEASE.items():
        ids = [key for t, key, _ in held if t == table]
        if ids:
            attempts = [n for t, _, n in held if t == table]
            status = await conn.execute(statement, ids, attempts)
            released += int(status.split()[-1])
    return released


async def mark_sent(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> None:
    """Sent; a digest's emails it carried are sent with it."""
    await conn.execute(
        """UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL
           WHERE delivery_id = $1 OR (digest_delivery_id = $1 AND status = 'held')""",
        delivery_id,
    )


async def mark_many_sent(
    conn: asyncpg.Connection, delivery_ids: list[uuid.UUID], mail_ids: list[uuid.UUID]
) -> None:
    """mark_sent and mark_mail_sent for several deliveries and mails in one statement (the deliverer
    records sends that finish together at once: one round trip and one WAL flush instead of one each).
    One statement, not a transaction of several: a worker stopped half-way (SIGSTOP, a long pause)
    never holds row locks that would keep other workers from taking its rows over.

    Committed without waiting for the WAL flush (synchronous_commit off for this statement's
    transaction alone, PostgreSQL docs 28.4 "Asynchronous Commit"): a send's slot waits for this
    statement, and the flush was most of that wait (1-4 ms at p50, 3-14 ms at p90 on a busy 2-core
    machine, against 0.2-0.8 ms). The row is visible to every other worker at once and survives a
    crash of the notifier, so the bound of a notifier crash (only the sends in flight repeat) holds
    as before. Only a crash of PostgreSQL itself (or the machine) within about 3 x wal_writer_delay
    (0.6 s by default) of the commit can lose these marks; those sends are then made again, each with
    its idempotency key (the same Message-ID, push Topic and tag) for the receiving side to show once."""
    await conn.execute(
        """WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true) AS setting),
           d AS (
               UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL
               WHERE delivery_id = ANY($1::uuid[]) OR (digest_delivery_id = ANY($1::uuid[]) AND status = 'held')
               RETURNING 1),
           m AS (
               UPDATE mails SET status = 'sent', sent_at = now(), secret = NULL, last_error = NULL
               WHERE mail_id = ANY($2::uuid[])
               RETURNING 1)
           SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM m), (SELECT setting FROM async_commit)""",
        delivery_ids,
        mail_ids,
    )


async def record_delivery_failure(
    conn: asyncpg.Connection,
    delivery_id: uuid.UUID,
    error: str,
    *,
    permanent: bool,
    out_of_attempts: bool,
    keep_trying_seconds: float | None,
    retry_in_seconds: float,
    forget_device: uuid.UUID | None = None,
) -> str | None:
    """A failed attempt, recorded in ONE statement (no transaction of several: a worker paused between
    its statements would hold the row locks another worker needs to take its rows over).

    Given up on ('failed', a digest's held emails fail with it) when ``permanent``, or when
    ``out_of_attempts`` and, if ``keep_trying_seconds`` is given (email), that long has passed since the
    delivery was due (created, or released from its hold); else tried again in ``retry_in_seconds``.
    ``forget_device``: a push subscription that is gone, deleted in the same statement. Returns the
    row's status afterwards ('failed' or 'pending'), or None when it is no longer pending (cancelled
    meanwhile: left as it is)."""
    status: str | None = await conn.fetchval(
        """WITH forgotten AS (DELETE FROM devices WHERE device_id = $7),
           outcome AS (
               SELECT d.delivery_id,
                      $3 OR ($4 AND ($5::float8 IS NULL
                          OR greatest(d.created_at, d.hold_until) < now() - $5 * interval '1 second')) AS give_up
               FROM deliveries d WHERE d.delivery_id = $1 AND d.status = 'pending'),
           changed AS (
               UPDATE deliveries d
               SET status = CASE WHEN o.give_up THEN 'failed' ELSE d.status END,
                   next_attempt_at = CASE WHEN o.give_up THEN d.next_attempt_at
                                          ELSE now() + $6 * interval '1 second' END,
                   last_error = $2
               FROM outcome o
               WHERE d.delivery_id = o.delivery_id
                  OR (o.give_up AND d.digest_delivery_id = o.delivery_id AND d.status = 'held')
               RETURNING d.delivery_id, d.status)
           SELECT status FROM changed WHERE delivery_id = $1""",
        delivery_id,
        error,
        permanent,
        out_of_attempts,
        keep_trying_seconds,
        retry_in_seconds,
        forget_device,
    )
    return status


async def claim_mails(
    conn: asyncpg.Connection, limit: int, lease_seconds: float = CLAIM_SECONDS
) -> list[asyncpg.Record]:
    """Up to limit due pending mails, each claimed for lease_seconds, with the reader's name and the school's
    time zone when the copies have them."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE mails m SET next_attempt_at = now() + $2 * interval '1 second', attempts = m.attempts + 1
           WHERE m.mail_id IN (
                 SELECT mail_id FROM mails
                 WHERE status = 'pending' AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING m.mail_id, m.kind, m.to_email, m.locale, m.context, m.secret, m.attempts, m.correlation_id,
                     (SELECT display_name FROM people WHERE person_id = m.person_id) AS display_name,
                     (SELECT time_zone FROM schools WHERE school_id = m.school_id) AS time_zone""",
        limit,
        lease_seconds,
    )
    return rows


async def mark_mail_sent(conn: asyncpg.Connection, mail_id: uuid.UUID) -> None:
    """Sent: the secret goes in the same statement, so no sent mail keeps its code or token."""
    await conn.execute(
        """UPDATE mails SET status = 'sent', sent_at = now(), secret = NULL, last_error = NULL
           WHERE mail_id = $1""",
        mail_id,
    )


async def record_mail_failure(
    conn: asyncpg.Connection,
    mail_id: uuid.UUID,
    error: str,
    *,
    permanent: bool,
    out_of_attempts: bool,
    keep_trying_seconds: float | None,
    retry_in_seconds: float,
) -> str | None:
    """A failed attempt at a one-off mail, in one statement; the rule of ``record_delivery_failure``
    (measured from the mail's creation). Given up on, its secret goes too (identity can issue a new
    code or link). Returns the status afterwards, or None when it is no longer pending."""
    status: str | None = await conn.fetchval(
        """UPDATE mails m
           SET status = CASE WHEN g.give_up THEN 'failed' ELSE m.status END,
               secret = CASE WHEN g.give_up THEN NULL ELSE m.secret END,
               next_attempt_at = CASE WHEN g.give_up THEN m.next_attempt_at
                                      ELSE now() + $6 * interval '1 second' END,
               last_error = $2
           FROM (SELECT $3 OR ($4 AND ($5::float8 IS NULL
                     OR created_at < now() - $5 * interval '1 second')) AS give_up
                 FROM mails WHERE mail_id = $1) g
           WHERE m.mail_id = $1 AND m.status = 'pending'
           RETURNING m.status""",
        mail_id,
        error,
        permanent,
        out_of_attempts,
        keep_trying_seconds,
        retry_in_seconds,
    )
    return status


async def cancel_post_deliveries(conn: asyncpg.Connection, post_id: uuid.UUID) -> int:
    """A deleted post: what was not sent of it yet is not sent (kept as failed, saying why), held ones
    (quiet hours, digest) too, and its excerpt is forgotten. How many deliveries were cancelled."""
    await conn.execute("UPDATE notifications SET excerpt = '' WHERE post_id = $1", post_id)
    cancelled = await conn.fetchrow(
        """WITH cancelled AS (
               UPDATE deliveries d SET status = 'failed', last_error = 'cancelled: the post was deleted'
               FROM notifications n
               WHERE n.post_id = $1 AND d.notification_id = n.notification_id AND d.status IN ('pending', 'held')
               RETURNING d.notification_id)
           SELECT count(*) AS count, coalesce(array_agg(DISTINCT notification_id), '{}') AS notifications
           FROM cancelled""",
        post_id,
    )
    # Sends a notifier claimed and queued before this commits are dropped when it learns of it (one
    # NOTIFY, not a look-up per send); only those already in flight may still go out.
    notifications = cancelled["notifications"]
    for start in range(0, len(notifications), _IDS_PER_NOTIFY):
        names = " ".join(str(n) for n in notifications[start : start + _IDS_PER_NOTIFY])
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"cancelled {names}")
    return int(cancelled["count"])


async def update_excerpt(conn: asyncpg.Connection, post_id: uuid.UUID, excerpt: str) -> None:
    """An edited post: messages not sent yet carry its new first words (nobody is notified again)."""
    await conn.execute("UPDATE notifications SET excerpt = $2 WHERE post_id = $1", post_id, excerpt)
