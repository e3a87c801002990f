"""Messages that wait: now and then (``schedule_seconds``, once across replicas) the notifier
releases held pushes whose quiet hours ended and scheduled messages whose moment came (the
day-before reminder, a conference opening), and makes each digest reader's daily digest at the
school's digest time.

Every step takes ``now`` (an aware datetime; a naive one is refused with ValueError) so tests drive
the clock instead of sleeping.

The digest (issue 8): at or after the school's ``digest_time`` (school-local), each person with
emails held for the digest gets one mail carrying all of them made before today's digest time,
oldest first; posts deleted meanwhile are not in it (their held emails were cancelled). The digest
time is read on the school's clocks as quiet hours are (preferences.wall_clock_instant): on the day
they skip 02:00-03:00 a digest at 02:30 goes at 03:00 summer time and takes what was made before
then; on the day they repeat it, at the first 02:30 (the second one finds it made). Exactly once
per person, school and local day, also across restarts and replicas: the digest's notification has
the dedupe key ``digest:{person}:{school}:{day}`` and a fixed id (uuid5 of it), and its email is a
delivery like any other (retried, never repeated once recorded sent).
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from typing import Any

import asyncpg
from aiohttp import web

from notifier import message_store
from notifier.delivery import NOTIFY_CHANNEL
from notifier.mails import local_zone
from notifier.preferences import as_utc, wall_clock_instant
from notifier.settings import Settings
from shared.app import POOL, settings_of
from shared.jobs import PeriodicJob

log = logging.getLogger(__name__)

JOB_NAME = "notifier-schedule"
_DIGEST_NAMESPACE = uuid.UUID("5f0c1a52-8d3e-4d0b-9a57-6b1f3c2e7d10")
_DEFAULT_DIGEST_TIME = time(18, 0)


def digest_time_of(text: str | None) -> time:
    """A school's HH:MM digest time; 18:00 when missing or malformed (identity validates it)."""
    try:
        return time.fromisoformat(text or "")
    except ValueError:
        return _DEFAULT_DIGEST_TIME


async def make_digests(conn: asyncpg.Connection, now: datetime, default_zone: str) -> int:
    """Make the digests due at ``now`` (the school's local day's digest once its time has come);
    how many were made. ValueError for a naive ``now``."""
    now = as_utc(now, "now")
    made = 0
    for school in await message_store.schools_with_digest_due(conn):
        zone = local_zone(school["time_zone"], default_zone)
        day = now.astimezone(zone).date()
        cutoff = wall_clock_instant(day, digest_time_of(school["digest_time"]), zone)
        if now < cutoff:
            continue
        by_person: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
        for row in await message_store.digest_items(conn, school["school_id"], cutoff):
            by_person[row["person_id"]].append(row)
        for person_id, rows in by_person.items():
            key = f"digest:{person_id}:{school['school_id']}:{day.isoformat()}"
            context: dict[str, Any] = {"day": day.isoformat(), "items": [_item(row) for row in rows]}
            if await message_store.create_digest(
                conn,
                uuid.uuid5(_DIGEST_NAMESPACE, key),
                school["school_id"],
                person_id,
                context,
                key,
                [row["delivery_id"] for row in rows],
            ):
                made += 1
    return made


def _item(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "kind": row["kind"],
        "group_name": row["group_name"] or "",
        "title": (row["context"] or {}).get("title", ""),
        "excerpt": row["excerpt"],
        "post_id": str(row["post_id"]) if row["post_id"] else None,
        "context": row["context"],
    }


async def run_schedule(conn: asyncpg.Connection, now: datetime, default_zone: str) -> tuple[int, int]:
    """One round: (deliveries released, digests made). Wakes the sender when anything became due.
    ValueError for a naive ``now`` (the database would read it in the machine's zone)."""
    now = as_utc(now, "now")
    released = await message_store.release_held(conn, now)
    digests = await make_digests(conn, now, default_zone)
    if released or digests:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        log.info("held messages due", extra={"released": released, "digests": digests})
    return released, digests


async def schedule(app: web.Application) -> AsyncIterator[None]:
    """The periodic job, as an app context."""
    settings = settings_of(app, Settings)

    async def run(conn: asyncpg.Connection) -> None:
        await run_schedule(conn, datetime.now(UTC), settings.default_time_zone)

    job = PeriodicJob(app[POOL], JOB_NAME, settings.schedule_seconds, run)
    await job.start()
    yield
    await job.stop()
