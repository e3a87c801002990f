"""How many photos a person and a school may upload: per hour (a person's refused uploads count too: judging
them cost as much), and how many unused ones a person may keep waiting for a post. Past a limit the
answer is 429 with the seconds until a slot frees up."""

import math
import uuid
import zlib
from datetime import datetime, timedelta

import asyncpg

from media.settings import Settings
from shared.errors import TooManyRequests

_HOUR = timedelta(hours=1)


async def check(
    conn: asyncpg.Connection, settings: Settings, person_id: uuid.UUID, school_id: uuid.UUID
) -> None:
    """Raise TooManyRequests (with retry_after in seconds) if one more upload would pass a limit."""
    now: datetime = await conn.fetchval("SELECT now()")
    hour = await conn.fetchrow(
        """WITH recent AS (
               SELECT created_at AS at FROM photos WHERE uploader_id = $1 AND created_at > $2
               UNION ALL
               SELECT refused_at FROM upload_refusals WHERE person_id = $1 AND refused_at > $2)
           SELECT count(*) AS uploads, min(at) AS oldest FROM recent""",
        person_id,
        now - _HOUR,
    )
    if hour["uploads"] >= settings.photo_uploads_per_person_per_hour:
        raise TooManyRequests(
            f"at most {settings.photo_uploads_per_person_per_hour} photos an hour (refused ones count too); "
            "try again later",
            retry_after=_seconds_until(hour["oldest"] + _HOUR, now),
        )
    person = await conn.fetchrow(
        # A send-later post's photos (reserved) are in a post; one let go counts from its release.
        """SELECT count(*) AS unused, min(GREATEST(created_at, released_at)) AS oldest_unused
           FROM photos WHERE uploader_id = $1 AND post_id IS NULL AND status <> 'rejected' AND NOT reserved""",
        person_id,
    )
    if person["unused"] >= settings.photo_unused_per_person:
        ttl = timedelta(seconds=settings.photo_unused_ttl_seconds)
        raise TooManyRequests(
            f"{person['unused']} uploaded photos are not in a post yet; post them first "
            "(unused photos are deleted after a day)",
            retry_after=_seconds_until(person["oldest_unused"] + ttl, now),
        )
    school = await conn.fetchrow(
        "SELECT count(*) AS last_hour, min(created_at) AS oldest FROM photos WHERE school_id = $1 AND created_at > $2",
        school_id,
        now - _HOUR,
    )
    if school["last_hour"] >= settings.photo_uploads_per_school_per_hour:
        raise TooManyRequests(
            f"the school's limit of {settings.photo_uploads_per_school_per_hour} photos an hour is reached; "
            "try again later",
            retry_after=_seconds_until(school["oldest"] + _HOUR, now),
        )


async def lock_school(conn: asyncpg.Connection, school_id: uuid.UUID) -> None:
    """Serialise the last check and the insert of a school's uploads until the transaction ends, so that
    uploads at the same moment cannot all pass one free slot."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", zlib.crc32(f"media-upload:{school_id}".encode()))


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


async def record_refusal(conn: asyncpg.Connection, person_id: uuid.UUID, school_id: uuid.UUID) -> None:
    """An upload refused at the door (too large, not an image, empty, or failing the full check in a
    worker); it counts towards the person's hourly limit."""
    await conn.execute(
        "INSERT INTO upload_refusals (person_id, school_id) VALUES ($1, $2)", person_id, school_id
    )


async def forget_refusals(conn: asyncpg.Connection) -> int:
    """Delete refusals older than the hour they count in; returns how many."""
    deleted: str = await conn.execute(
        "DELETE FROM upload_refusals WHERE refused_at < now() - interval '1 hour'"
    )
    return int(deleted.split()[-1])
