"""SQL of what is sent to whom and when: preferences and quiet hours, notifications of every message
kind with their deliveries planned by preferences.py, held deliveries and their release, digests.

Recipients whose account the copy does not have yet (identity's AccountChanged is handled after the
membership or the message that names them: several replicas and concurrent batches consume one queue,
and a failed handler's event comes back after a delay) are not skipped: their deliveries are owed
(``awaiting_account``) and made by their preferences when the account arrives (``deliver_awaited``).
Not made at once without it: a delivery is sent to the copy's address in the copy's language, and one
that cannot be sent yet would stay first in line for its provider."""

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

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
    as_utc,
    channels_for,
    plan,
)
from notifier.settings import Settings

log = logging.getLogger(__name__)

# The zone of a school the copy does not know yet: the deployment's DEFAULT_TIME_ZONE, the one the
# schedule and the mails use for such a school too. Event handlers cannot reach the app's settings, so
# the app sets it at start-up (use_default_zone); until then the setting's default.
DEFAULT_ZONE: str = Settings.model_fields["default_time_zone"].default

# Messages owed to a person whose account arrives later than this after the message are not sent:
# the day's news is stale by then (the delivery of a message that failed is given up on in hours too).
AWAIT_ACCOUNT_FOR = timedelta(hours=24)


def use_default_zone(name: str) -> None:
    """Make ``name`` (Settings.default_time_zone, an IANA name) the zone of every school this process
    does not know yet."""
    global DEFAULT_ZONE  # one deployment setting, set once at start-up
    DEFAULT_ZONE = name


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
    rows = await conn.fetch(
        "SELECT category, channel, timing FROM preferences WHERE person_id = $1", person_id
    )
    return {row["category"]: Choice(row["channel"], row["timing"]) for row in rows}


async def quiet_hours_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> QuietHours | None:
    row = await conn.fetchrow("SELECT starts, ends FROM quiet_hours WHERE person_id = $1", person_id)
    return QuietHours(row["starts"], row["ends"]) if row else None


async def save_preferences(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    choices: dict[Category, Choice],
    quiet: QuietHours | None,
    *,
    now: datetime | None = None,
) -> None:
    """Replace the person's choices (every category given) and quiet hours (None: none), in one
    transaction (the caller's when it has one, after preferences.one_change_at_a_time). What waits
    (for the digest, the end of quiet hours) on a channel a category no longer has is dropped, and
    what waits for its moment too unless the person would then not hear of it at all (see
    drop_held). Which channels a category has is read as the plan and the unsubscribe page read it
    (preferences.channels_for: ``auto`` is push only for a person with a device, email only
    without). The pushes still held are then planned again by the new quiet hours
    (replan_held_pushes) as of ``now`` (the clock's by default)."""
    async with conn.transaction():
        has_device = await has_a_device(conn, person_id)
        kept = {category: channels_for(c.channel, has_device) for category, c in choices.items()}
        silent = [c for c, (email, push) in kept.items() if not email and not push]
        push_only = [c for c, (email, push) in kept.items() if push and not email]
        email_only = [c for c, (email, push) in kept.items() if email and not push]
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
        await replan_held_pushes(conn, person_id, quiet, now or datetime.now(UTC))


async def has_a_device(conn: asyncpg.Connection, person_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE person_id = $1)", person_id))


async def replan_held_pushes(
    conn: asyncpg.Connection, person_id: uuid.UUID, quiet: QuietHours | None, now: datetime
) -> int:
    """Plan the person's held pushes again by ``quiet`` (their quiet hours now), as preferences.plan
    plans a new one: held until the end of the quiet period that the push's moment (its ``due_at``, or
    ``now`` when that passed or it has none) falls in, in its school's zone; else held until its moment
    when that is later; else due now. A parent who shortens or drops their quiet hours gets what was
    held at once, not at the old end; one who adds them has a scheduled push held past them. A push
    held for quiet hours before deliveries kept ``due_at`` (migration 007) counts as for the moment it
    was made. How many changed. ValueError for a naive ``now``."""
    now = as_utc(now, "now")
    rows = await conn.fetch(
        """SELECT d.delivery_id, d.hold_reason, d.hold_until, d.due_at, s.time_zone
           FROM deliveries d JOIN notifications n USING (notification_id)
           LEFT JOIN schools s ON s.school_id = n.school_id
           WHERE d.person_id = $1 AND d.channel = 'push' AND d.status = 'held'
             AND d.hold_reason IN ('quiet_hours', 'scheduled')
           FOR UPDATE OF d""",
        person_id,
    )
    changes: list[tuple[uuid.UUID, str, str, datetime]] = []
    for row in rows:
        # A scheduled push is held until its moment: that is its moment also without due_at.
        moment_of = row["due_at"] or (row["hold_until"] if row["hold_reason"] == "scheduled" else None)
        due = moment_of if moment_of is not None and moment_of > now else None
        moment = due or now
        zone = local_zone(row["time_zone"], DEFAULT_ZONE)
        quiet_end = quiet.end_after(moment, zone) if quiet is not None else None
        if quiet_end is not None:
            change = (row["delivery_id"], "held", "quiet_hours", quiet_end)
        elif due is not None:
            change = (row["delivery_id"], "held", "scheduled", due)
        else:  # due now, as release_held makes it (hold_until: when it became due)
            change = (row["delivery_id"], "pending", row["hold_reason"], now)
        if change[1:] != ("held", row["hold_reason"], row["hold_until"]):
            changes.append(change)
    await conn.executemany(
        """UPDATE deliveries SET status = $2, hold_reason = $3, hold_until = $4, next_attempt_at = now()
           WHERE delivery_id = $1 AND status = 'held'""",
        changes,
    )
    return len(changes)


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


async def recipients(
    conn: asyncpg.Connection,
    person_ids: Sequence[uuid.UUID],
    category: Category,
    default: Choice = DEFAULT_CHOICE,
) -> list[Recipient]:
    """Each known person (the account copy has them; fan_out owes the others their deliveries until it
    does) with their choice for category (``default`` when they never set it), devices and quiet
    hours, in one query."""
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


async def school_zone(conn: asyncpg.Connection, school_id: uuid.UUID | None, default: str) -> ZoneInfo:
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


async def add_deliveries(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    planned: list[Planned],
    due_at: dict[uuid.UUID, datetime] | None = None,
) -> int:
    """Insert the planned deliveries of a notification (one email per person, one push per device:
    a repeat is ignored); how many are new. ``due_at``: per person, the later moment the message is
    for (replan_held_pushes plans a held push again from it)."""
    if not planned:
        return 0
    due = due_at or {}
    result = await conn.execute(
        """INSERT INTO deliveries (delivery_id, notification_id, person_id, channel, device_id, status,
                                   hold_reason, hold_until, due_at)
           SELECT gen_random_uuid(), $1, p, c, d, s, r, u, w
           FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[],
                       $8::timestamptz[]) AS t(p, c, d, s, r, u, w)
           ON CONFLICT DO NOTHING""",
        notification_id,
        [p.person_id for p in planned],
        [p.channel for p in planned],
        [p.device_id for p in planned],
        [p.status for p in planned],
        [p.hold_reason for p in planned],
        [p.hold_until for p in planned],
        [due.get(p.person_id) for p in planned],
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
    until then). Those whose account the copy does not have yet are owed theirs (await_account).
    How many deliveries were made."""
    now = as_utc(now, "now")
    zone = await school_zone(conn, school_id, default_zone)
    moments = send_at or {}
    planned: list[Planned] = []
    due_at: dict[uuid.UUID, datetime] = {}
    known = await recipients(conn, person_ids, category, default)
    for recipient in known:
        moment = moments.get(recipient.person_id)
        planned += plan(recipient, now=now, zone=zone, urgent=urgent, send_at=moment)
        if moment is not None and as_utc(moment, "send_at") > now:
            due_at[recipient.person_id] = moment
    unknown = set(person_ids) - {r.person_id for r in known}
    if unknown:
        await await_account(conn, notification_id, sorted(unknown), moments, default)
    return await add_deliveries(conn, notification_id, planned, due_at)


async def await_account(
    conn: asyncpg.Connection,
    notification_id: uuid.UUID,
    person_ids: Sequence[uuid.UUID],
    send_at: dict[uuid.UUID, datetime],
    default: Choice,
) -> None:
    """Owe the notification's deliveries to people whose account the copy does not have yet: made by
    deliver_awaited when it arrives. Logged, so that an account that never comes shows."""
    await conn.execute(
        """INSERT INTO awaiting_account (notification_id, person_id, send_at, default_channel, default_timing)
           SELECT $1, p, s, $4, $5 FROM unnest($2::uuid[], $3::timestamptz[]) AS t(p, s)
           ON CONFLICT DO NOTHING""",
        notification_id,
        list(person_ids),
        [send_at.get(p) for p in person_ids],
        default.channel,
        default.timing,
    )
    log.warning(
        "recipients without an account copy yet: their deliveries wait for it",
        extra={"notification_id": str(notification_id), "people": len(person_ids)},
    )


async def deliver_awaited(conn: asyncpg.Connection, person_id: uuid.UUID, now: datetime) -> int:
    """Make the deliveries owed to a person whose account just arrived (await_account), by their
    preferences as they are now, each message for the moment it was for: only of messages still meant
    for them (a group's message while they are in the group; a cancelled reminder, a deleted post or a
    notice about an erased child is no longer owed, see forget_awaited) and made at most
    AWAIT_ACCOUNT_FOR ago (older ones are dropped and logged). How many deliveries were made."""
    now = as_utc(now, "now")
    rows = await conn.fetch(
        """DELETE FROM awaiting_account a USING notifications n
           WHERE a.person_id = $1 AND n.notification_id = a.notification_id
           RETURNING a.notification_id, a.send_at, a.default_channel, a.default_timing, n.kind, n.school_id,
                     n.group_id, n.urgent, n.created_at,
                     n.group_id IS NULL OR EXISTS (SELECT 1 FROM memberships m WHERE m.group_id = n.group_id
                                                     AND m.person_id = a.person_id AND m.active) AS member""",
        person_id,
    )
    made = 0
    stale = 0
    for row in rows:
        if not row["member"]:
            continue
        if row["created_at"] < now - AWAIT_ACCOUNT_FOR:
            stale += 1
            continue
        made += await fan_out(
            conn,
            row["notification_id"],
            [person_id],
            CATEGORY[row["kind"]],
            school_id=row["school_id"],
            default_zone=DEFAULT_ZONE,
            now=now,
            urgent=row["urgent"],
            send_at={person_id: row["send_at"]} if row["send_at"] is not None else None,
            default=Choice(row["default_channel"], row["default_timing"]),
        )
    if stale:
        log.warning(
            "account arrived too late for messages owed to it: not sent",
            extra={"person_id": str(person_id), "messages": stale},
        )
    return made


async def forget_awaited(
    conn: asyncpg.Connection,
    *,
    post_id: uuid.UUID | None = None,
    dedupe_prefix: str | None = None,
    child_id: uuid.UUID | None = None,
) -> int:
    """No longer owe the messages of a deleted post, of notifications whose dedupe_key starts with
    ``dedupe_prefix`` (a moved or cancelled booking's reminder) or that name an erased child. How many."""
    result = await conn.execute(
        """DELETE FROM awaiting_account a USING notifications n
           WHERE n.notification_id = a.notification_id
             AND (n.post_id = $1 OR n.dedupe_key LIKE $2 || '%' OR n.context->>'child_id' = $3::text)""",
        post_id,
        dedupe_prefix,
        str(child_id) if child_id is not None else None,
    )
    return int(result.split()[-1])


async def cancel_notifications(conn: asyncpg.Connection, dedupe_prefix: str, reason: str) -> int:
    """Cancel what is not sent yet of the notifications whose dedupe_key starts with dedupe_prefix
    (a moved or cancelled booking's day-before reminder), and what is owed of them. How many deliveries."""
    await forget_awaited(conn, dedupe_prefix=dedupe_prefix)
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


async def digest_items(
    conn: asyncpg.Connection, school_id: uuid.UUID, before: datetime
) -> list[asyncpg.Record]:
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


# A digest is written from its own copy of each message it carries (schedule.make_digests: kind,
# group, title, excerpt, post id and the notice's context), made at the digest time; these keep the
# copies in step with what happens to the messages after that. A message can only be in the digests
# of its school made after it: those are found by the index of migration 009. (A booking's
# day-before reminder never is in a digest, preferences.plan: nothing to take out when it is cancelled;
# a digest carrying a booking's confirmation tells of its move or cancellation as a message of its own.) Made after, but not
# stamped after for sure: created_at is when a transaction began, and the schedule's may have begun
# before the message's and read it once committed; an hour's margin covers any such transaction.
DIGEST_POST_DELETED = "cancelled: the post was deleted"


async def forget_post(conn: asyncpg.Connection, post_id: uuid.UUID) -> int:
    """A deleted post disappears everywhere: its title leaves its own notification (the excerpt goes
    in store.cancel_post_deliveries) and the post leaves every digest, sent or not; a digest not sent
    yet that carried nothing else is not sent. How many digests it left."""
    made = await conn.fetchrow(
        """UPDATE notifications SET context = context || '{"title": ""}'::jsonb
           WHERE post_id = $1 RETURNING school_id, created_at""",
        post_id,
    )
    if made is None or made["school_id"] is None:
        return 0  # never reached the notifier (or before schools were known: then no digest has it)
    item = {"post_id": str(post_id)}
    return await _drop_from_digests(
        conn, item, made["school_id"], made["created_at"], DIGEST_POST_DELETED, unsent_only=False
    )


async def follow_post_edit(conn: asyncpg.Connection, post_id: uuid.UUID, title: str, excerpt: str) -> None:
    """An edited post: its notification's title (the excerpt: store.update_excerpt) and its copies in
    digests not sent yet say what the post says now (nobody is notified again)."""
    made = await conn.fetchrow(
        """UPDATE notifications SET context = context || jsonb_build_object('title', $2::text)
           WHERE post_id = $1 RETURNING school_id, created_at""",
        post_id,
        title,
    )
    if made is None or made["school_id"] is None:
        return
    await conn.execute(
        """UPDATE notifications n
           SET context = jsonb_set(n.context, '{items}', (
               SELECT jsonb_agg(CASE WHEN entry->>'post_id' = $1
                                     THEN entry || jsonb_build_object(
                                         'title', $4::text, 'excerpt', $5::text,
                                         'context', COALESCE(entry->'context', '{}'::jsonb)
                                                    || jsonb_build_object('title', $4::text))
                                     ELSE entry END
                                ORDER BY position)
               FROM jsonb_array_elements(n.context->'items') WITH ORDINALITY AS items(entry, position)))
           FROM deliveries d
           WHERE n.kind = 'digest' AND n.school_id = $2 AND n.created_at >= $3::timestamptz - interval '1 hour'
             AND n.context->'items' @> jsonb_build_array(jsonb_build_object('post_id', $1::text))
             AND d.delivery_id = n.notification_id AND d.status IN ('pending', 'held')""",
        str(post_id),
        made["school_id"],
        made["created_at"],
        title,
        excerpt,
    )


async def _drop_from_digests(
    conn: asyncpg.Connection,
    item: dict[str, Any],
    school_id: uuid.UUID,
    since: datetime,
    reason: str,
    *,
    unsent_only: bool,
) -> int:
    """Remove the items that contain ``item`` (jsonb containment) from the school's digests made
    since ``since`` (all, or only those not sent yet); cancel, with ``reason``, a digest not sent yet
    that is left empty. How many digests had it."""
    rows = await conn.fetch(
        """UPDATE notifications n
           SET context = jsonb_set(n.context, '{items}', COALESCE((
               SELECT jsonb_agg(entry ORDER BY position)
               FROM jsonb_array_elements(n.context->'items') WITH ORDINALITY AS items(entry, position)
               WHERE NOT entry @> $1::jsonb), '[]'::jsonb))
           WHERE n.kind = 'digest' AND n.school_id = $2 AND n.created_at >= $3::timestamptz - interval '1 hour'
             AND n.context->'items' @> jsonb_build_array($1::jsonb)
             AND (NOT $4 OR EXISTS (SELECT 1 FROM deliveries d WHERE d.delivery_id = n.notification_id
                                    AND d.status IN ('pending', 'held')))
           RETURNING n.notification_id, jsonb_array_length(n.context->'items') = 0 AS empty""",
        item,
        school_id,
        since,
        unsent_only,
    )
    empty = [row["notification_id"] for row in rows if row["empty"]]
    if empty:
        await conn.execute(
            """UPDATE deliveries SET status = 'failed', last_error = $2
               WHERE delivery_id = ANY($1::uuid[]) AND status IN ('pending', 'held')""",
            empty,
            reason,
        )
    return len(rows)
