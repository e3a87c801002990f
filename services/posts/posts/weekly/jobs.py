"""The weekly check (seed rule 5's minimum): a periodic job, once across replicas, that reminds the
teachers of each group with fewer posts this week than its school asks, once per group and week,
when the school's local week is nearly over (settings QUIET_CHECK_WEEKDAY and QUIET_CHECK_FROM,
default Friday from 12:00 school-local: the afternoon and the weekend are left to post).

Once per group-week holds across runs and replicas three times over: the runs take one advisory lock
(shared.jobs), each group-week is recorded in ``quiet_weeks`` (its key) in the transaction that writes
the event, and the event id is derived from group and week (the outbox's event_id is unique, the
consumers' inbox deduplicates on it). A week whose check window passed while no replica ran (Friday
noon to Sunday midnight) is not reminded afterwards: a reminder for a week that is over helps nobody.
"""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
from aiohttp import web

from posts.settings import Settings
from posts.weekly import store
from posts.weekly.domain import check_offset, iso_week, quiet_event_id
from shared.app import POOL, settings_of
from shared.contracts import GroupQuiet
from shared.jobs import PeriodicJob
from shared.outbox import publish


async def remind_quiet_groups(
    conn: asyncpg.Connection,
    offset: timedelta,
    at: datetime | None = None,
    school_id: uuid.UUID | None = None,
) -> int:
    """Find the quiet groups at ``at`` (default: the database's now; tests choose it) whose school's
    week is at least ``offset`` old, record each group-week and publish its GroupQuiet (naming the
    group's teachers), in the caller's transaction; how many events were written. A group without a
    teacher is recorded as checked, without an event. ``school_id``: that school only."""
    sent = 0
    for group in await store.quiet_groups(conn, at, offset, school_id):
        teachers = list(group["teacher_ids"])
        event_id = quiet_event_id(group["group_id"], group["week_starts_on"]) if teachers else None
        if not await store.record_quiet_week(conn, group, event_id):
            continue
        if event_id is None:
            continue
        event = GroupQuiet(
            group_id=group["group_id"],
            school_id=group["school_id"],
            group_name=group["name"],
            week=iso_week(group["week_starts_on"]),
            posts_this_week=group["posts"],
            min_posts_per_week=group["min_posts_per_week"],
            teacher_ids=teachers,
        )
        await publish(conn, event, group["school_id"], event_id=event_id)
        sent += 1
    return sent


async def weekly_check(app: web.Application) -> AsyncIterator[None]:
    """The job as one of the app's contexts."""
    settings = settings_of(app, Settings)
    offset = check_offset(settings.quiet_check_weekday, settings.quiet_check_from)

    async def job(conn: asyncpg.Connection) -> None:
        await remind_quiet_groups(conn, offset)

    periodic = PeriodicJob(app[POOL], "posts-weekly-check", settings.quiet_check_every_seconds, job)
    await periodic.start()
    yield
    await periodic.stop()
