"""SQL of what is sent to whom and when: preferences and quiet hours, notifications of every message
kind with their deliveries planned by preferences.py, held deliveries and their release, digests."""

import uuid
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any, Literal

import asyncpg

from notifier.mails import local_zone
from notifier.notices import CATEGORY
from notifier.preferences import (
    DEFAULT_CHOICE,
    Category,
    Choice,
    Planned,
    QuietHours,
    Recipient,
    plan,
)

# The zone of a school the copy does not know yet (the Settings' default_time_zone, which event
# handlers have no access to; schools are normally known before their first post).
DEFAULT_ZONE = "Europe/Amsterdam"


async def set_digest_time(
    conn: asyncpg.Connection, school_id: uuid.UUID, digest_time: str, revision: int
) -> None:
    """Keep the school's digest time (HH:MM, school-local) with the revision upsert_school just kept."""
    await conn.execute(
        "UPDATE schools SET digest_time = $2 WHERE school_id = $1 AND revision = $3",
        school_id,
        digest_time,
        revision,
    )


async def choices_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> dict[str, Choice]:
    """The categories the person set (others have the default)."""
    rows = await conn.fetch("SELECT category, channel, timing FROM preferences WHERE person_id = $1", person_id)
    return {row["category"]: Choice(row["channel"], row["timing"]) for row in rows}


async def quiet_hours_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> QuietHours | None:
    row = await conn.fetchrow("SELECT starts, ends FROM quiet_hours WHERE person_id = $1", person_id)
    return QuietHours(row["starts"], row["ends"]) if row else None


async def save_preferences(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    choices: dict[Category, Choice],
    quiet: QuietHours | None,
) -> None:
    """Replace the person's choices (every category given) and quiet hours (None: none). What waits
    (for the digest, the end of quiet hours) on a channel a category no longer has is dropped, and
    what waits for its moment too unless the person would then not hear of it at all (see drop_held)."""
    async with conn.transaction():
        silent = [c for c, choice in choices.items() if choice.channel == "none"]
        push_only = [c for c, choice in choices.items() if choice.channel == "push"]
        email_only = [c for c, choice in choices.items() if choice.channel == "email"]
        await drop_held(conn, person_id, silent, "email")
        await drop_held(conn, person_id, silent, "push")
        await drop_held(conn, person_id, push_only, "email", keep_alone=True)
        await drop_held(conn, person_id, email_only, "push", keep_alone=True)
        await conn.executemany(
            """INSERT INTO preferences (person_id, category, channel, timing) VALUES ($1, $2, $3, $4)
               ON CONFLICT (person_id, category) DO UPDATE
                 SET channel = EXCLUDED.channel, timing = EXCLUDED.timing, updated_at = now()""",
            [(person_id, category, c.channel, c.timing) for category, c in choices.items()],
        )
        if quiet is None:
            await conn.execute("DELETE FROM quiet_hours WHERE person_id = $1", person_id)
        else:
            await conn.execute(
                """INSERT INTO quiet_hours (person_id, starts, ends) VALUES ($1, $2, $3)
                   ON CONFLICT (person_id) DO UPDATE SET starts = EXCLUDED.starts, ends = EXCLUDED.ends""",
                person_id,
                quiet.starts,
                quiet.ends,
            )


# Channels that never mean email (``auto`` does, without a device).
_NO_EMAIL = ("push", "none")


async def drop_held(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    categories: Sequence[Category],
    channel: Literal["email", "push"] = "email",
    *,
    keep_alone: bool = False,
) -> int:
    """Cancel the person's ``channel`` deliveries of these categories that are held (an email for the
    digest or a later moment, a push for quiet hours or a later moment) and not yet in a digest: once
    someone turned that channel of a category off (one-click unsubscribe, the settings), what waited
    from before must not come (a digest, the morning's pushes). How many.

    ``keep_alone``: one held for its moment (a day-before reminder) stays unless the same message
    reaches the person on the other channel too: someone switching reminders from email to push in
    the settings is not left without the reminder already planned for them."""
    kinds = [kind for kind, category in CATEGORY.items() if category in categories]
    if not kinds:
        return 0
    result = await conn.execute(
        """UPDATE deliveries d SET status = 'failed', last_error = 'cancelled: ' || $3 || ' turned off'
           FROM notifications n
           WHERE d.person_id = $1 AND d.channel = $3 AND d.status = 'held' AND d.digest_delivery_id IS NULL
             AND n.notification_id = d.notification_id AND n.kind = ANY($2::text[])
             AND (NOT $4 OR d.hold_reason <> 'scheduled'
                  OR EXISTS (SELECT 1 FROM deliveries o WHERE o.notification_id = d.notification_id
                               AND o.person_id = d.person_id AND o.channel <> $3
                               AND o.status IN ('pending', 'held', 'sent')))""",
        person_id,
        kinds,
        channel,
        keep_alone,
    )
    return int(result.split()[-1])


async def drop_held_of_group(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> int:
    """Cancel what is held for the person (a push in quiet hours, an email for the digest or a later
    moment, not yet in a digest) of the group's messages: they no longer belong to it, and its posts
    are a 404 to them now. How many."""
    result = await conn.execute(
        """UPDATE deliveries d SET status = 'failed', last_error = 'cancelled: no longer in the group'
           FROM notifications n
           WHERE d.person_id = $2 AND d.status = 'held' AND d.digest_delivery_id IS NULL
             AND n.notification_id = d.notification_id AND n.group_id = $1""",
        group_id,
        person_id,
    )
    return int(result.split()[-1])


async def set_channel(
    conn: asyncpg.Connection, person_id: uuid.UUID, category: Category, channel: str
) -> None:
    """Set one category's channel, keeping its timing (the default one when never set). Without
    email now, its emails that wait (for the digest, for their moment) are dropped."""
    if channel in _NO_EMAIL:
        await drop_held(conn, person_id, [category])
    await conn.execute(
        """INSERT INTO preferences (person_id, category, channel, timing) VALUES ($1, $2, $3, $4)
           ON CONFLICT (person_id, category) DO UPDATE SET channel = EXCLUDED.channel, updated_at = now()""",
        person_id,
        category,
        channel,
        DEFAULT_CHOICE.timing,
    )


async def recipients(
    conn: asyncpg.Connection,
    person_ids: Sequence[uuid.UUID],
    category: Category,
    default: Choice = DEFAULT_CHOICE,
) -> list[Recipient]:
    """Each known person (the account copy has them) with their choice for category (``default``
    when they never set it), devices and quiet hours, in one query."""
    rows = await conn.fetch(
        """SELECT p.person_id, pr.channel, pr.timing, q.starts, q.ends,
                  coalesce((SELECT array_agg(d.device_id ORDER BY d.created_at) FROM devices d
                            WHERE d.person_id = p.person_id), '{}') AS devices
           FROM people p
           LEFT JOIN preferences pr ON pr.person_id = p.person_id AND pr.category = $2
           LEFT JOIN quiet_hours q ON q.person_id = p.person_id
           WHERE p.person_id = ANY($1::uuid[])""",
        list(dict.fromkeys(person_ids)),
        category,
    )
    return [
        Recipient(
            person_id=row["person_id"],
            choice=Choice(row["channel"], row["timing"]) if row["channel"] else default,
            devices=tuple(row["devices"]),
            quiet=QuietHours(row["starts"], row["ends"]) if row["starts"] is not None else None,
        )
        for row in rows
    ]


async def group_guardians(conn: asyncpg.Connection, group_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT person_id FROM memberships WHERE group_id = $1 AND role = 'guardian' AND active", group_id
    )
    return [row["person_id"] for row in rows]


async def families_with_several_children(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Of person_ids, the guardians with more than one child in the school's groups (active memberships)."""
    rows = await conn.fetch(
        """SELECT m.person_id FROM memberships m JOIN groups g USING (group_id), unnest(m.children) AS c(child)
           WHERE g.school_id = $1 AND m.person_id = ANY($2::uuid[]) AND m.role = 'guardian' AND m.active
           GROUP BY m.person_id HAVING count(DISTINCT c.child) > 1""",
        school_id,
        list(person_ids),
    )
    return {row["person_id"] for row in rows}


async def school_zone(conn: asyncpg.Connection, school_id: uuid.UUID | None, default: str) -> Any:
    """The school's ZoneInfo (the default zone when the school is not known yet)."""
    name = (
        await conn.fetchval("SELECT time_zone FROM schools WHERE school_id = $1", school_id)
        if school_id is not None
        else None
    )
    return local_zone(name, default)


async def create_notification(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    kind: str,
    *,
    school_id: uuid.UUID | None,
    group_id: uuid.UUID | None = None,
    post_id: uuid.UUID | None = None,
    excerpt: str = "",
    context: dict[str, Any] | None = None,
    urgent: bool = False,
    dedupe_key: str | None = None,
    correlation_id: str | None = None,
) -> bool:
    """Record a message; False when it exists already (the same post, or the same dedupe_key)."""
    created = await conn.fetchval(
        """INSERT INTO notifications (notification_id, school_id, group_id, post_id, excerpt, correlation_id,
                                      kind, context, urgent, dedupe_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT DO NOTHING RETURNING true""",
        notification_id,
        school_id,
        group_id,
        post_id,
        excerpt,
        correlation_id,
        kind,
        context or {},
        urgent,
        dedupe_key,
    )
    return bool(created)


async def add_deliveries(conn: asyncpg.Connection, notification_id: uuid.UUID, planned: list[Planned]) -> int:
    """Insert the planned deliveries of a notification (one email per person, one push per device:
    a repeat is ignored); how many are new."""
    if not planned:
        return 0
    result = await conn.execute(
        """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel, device_id, status,
                                   hold_reason, hold_until)
           SELECT gen_random_uuid(), $1, p, c, d, s, r, u
           FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[])
                AS t(p, c, d, s, r, u)
           ON CONFLICT DO NOTHING""",
        notification_id,
        [p.person_id for p in planned],
        [p.channel for p in planned],
        [p.device_id for p in planned],
        [p.status for p in planned],
        [p.hold_reason for p in planned],
        [p.hold_until for p in planned],
    )
    return int(result.split()[-1])


async def fan_out(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    person_ids: Sequence[uuid.UUID],
    category: Category,
    *,
    school_id: uuid.UUID | None,
    default_zone: str,
    now: datetime,
    urgent: bool = False,
    send_at: dict[uuid.UUID, datetime] | None = None,
    default: Choice = DEFAULT_CHOICE,
) -> int:
    """Plan and insert the deliveries of a notification to person_ids by their preferences
    (``default`` for who never chose). ``send_at``: per person, the moment the message is for (held
    until then)."""
    zone = await school_zone(conn, school_id, default_zone)
    planned: list[Planned] = []
    for recipient in await recipients(conn, person_ids, category, default):
        moment = (send_at or {}).get(recipient.person_id)
        planned += plan(recipient, now=now, zone=zone, urgent=urgent, send_at=moment)
    return await add_deliveries(conn, notification_id, planned)


async def cancel_notifications(conn: asyncpg.Connection, dedupe_prefix: str, reason: str) -> int:
    """Cancel what is not sent yet of the notifications whose dedupe_key starts with dedupe_prefix
    (a moved or cancelled booking's day-before reminder). How many deliveries."""
    result = await conn.execute(
        """UPDATE deliveries d SET status = 'failed', last_error = $2
           FROM notifications n
           WHERE n.dedupe_key LIKE $1 || '%' AND d.notification_id = n.notification_id
             AND d.status IN ('pending', 'held')""",
        dedupe_prefix,
        reason,
    )
    return int(result.split()[-1])


async def notification_exists(conn: asyncpg.Connection, dedupe_key: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM notifications WHERE dedupe_key = $1", dedupe_key))


async def day_before_waiting(conn: asyncpg.Connection, booking_id: uuid.UUID) -> bool:
    """Whether a day-before reminder of the booking is held (through the small held part of deliveries)."""
    found = await conn.fetchval(
        """SELECT true FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE d.status = 'held' AND d.hold_reason = 'scheduled' AND n.kind = 'day_before'
             AND n.context->>'booking_id' = $1
           LIMIT 1""",
        str(booking_id),
    )
    return bool(found)


async def release_held(conn: asyncpg.Connection, now: datetime) -> int:
    """Held pushes whose quiet hours ended and scheduled messages whose moment came become due."""
    result = await conn.execute(
        """UPDATE deliveries SET status = 'pending', next_attempt_at = now()
           WHERE status = 'held' AND hold_reason IN ('quiet_hours', 'scheduled') AND hold_until <= $1""",
        now,
    )
    return int(result.split()[-1])


async def schools_with_digest_due(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Schools with emails waiting for a digest: school_id, time_zone, digest_time."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT s.school_id, s.time_zone, s.digest_time FROM schools s
           WHERE EXISTS (SELECT 1 FROM deliveries d JOIN notifications n USING (notification_id)
                         WHERE d.status = 'held' AND d.hold_reason = 'digest' AND d.digest_delivery_id IS NULL
                           AND n.school_id = s.school_id)"""
    )
    return rows


async def digest_items(conn: asyncpg.Connection, school_id: uuid.UUID, before: datetime) -> list[asyncpg.Record]:
    """The emails of the school waiting for a digest, made before ``before``, oldest first, with what
    the digest says of each."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT d.delivery_id, d.person_id, n.notification_id, n.kind, n.post_id, n.group_id, n.excerpt,
                  n.context, n.created_at, g.name AS group_name
           FROM deliveries d JOIN notifications n USING (notification_id)
           LEFT JOIN groups g ON g.group_id = n.group_id
           WHERE d.status = 'held' AND d.hold_reason = 'digest' AND d.digest_delivery_id IS NULL
             AND n.school_id = $1 AND d.created_at <= $2
           ORDER BY d.person_id, n.created_at""",
        school_id,
        before,
    )
    return rows


async def attach_to_digest(
    conn: asyncpg.Connection, digest_delivery_id: uuid.UUID, delivery_ids: list[uuid.UUID]
) -> None:
    await conn.execute(
        """UPDATE deliveries SET digest_delivery_id = $1
           WHERE delivery_id = ANY($2::uuid[]) AND status = 'held'""",
        digest_delivery_id,
        delivery_ids,
    )


async def create_digest(
    conn: asyncpg.Connection,
    digest_id: uuid.UUID,
    school_id: uuid.UUID,
    person_id: uuid.UUID,
    context: dict[str, Any],
    dedupe_key: str,
    included: list[uuid.UUID],
) -> bool:
    """A person's digest for a day: its notification, its one email (id = digest_id too) due now, and
    the held emails it carries attached to it (sent or failed with it). False when that day's
    digest exists already: then the held emails wait for the next one."""
    if not await create_notification(
        conn, digest_id, "digest", school_id=school_id, context=context, dedupe_key=dedupe_key
    ):
        return False
    await conn.execute(
        """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel)
           VALUES ($1, $1, $2, 'email')""",
        digest_id,
        person_id,
    )
    await attach_to_digest(conn, digest_id, included)
    return True


async def unsubscribe_key(conn: asyncpg.Connection) -> bytes:
    key: bytes = await conn.fetchval("SELECT key FROM unsubscribe_keys WHERE key_id = 1")
    return key


def quiet_from_strings(starts: str | None, ends: str | None) -> QuietHours | None:
    if not starts or not ends:
        return None
    return QuietHours(time.fromisoformat(starts), time.fromisoformat(ends))
