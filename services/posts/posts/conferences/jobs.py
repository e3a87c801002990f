"""The "not booked yet" reminder: a periodic job, once across replicas, that publishes
BookingReminderDue for each child of a schedule without a booking once the window closes within two
days, once per schedule and child (conference_reminders). The reminder the day before a booked
conference is the notifier's own, from SlotBooked.starts_at."""

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from posts.conferences import store
from posts.conferences.domain import REMIND_EVERY_SECONDS, REMINDER_BEFORE_CLOSE
from shared.app import POOL
from shared.contracts import BookingReminderDue
from shared.jobs import PeriodicJob
from shared.outbox import publish_many

JOB_NAME = "posts-conference-reminders"


async def remind_not_booked(conn: asyncpg.Connection) -> int:
    """Publish the reminders that are due, in the caller's transaction; how many."""
    sent = 0
    for schedule in await store.closing_soon(conn, REMINDER_BEFORE_CLOSE.total_seconds()):
        due = await store.not_booked_unreminded(conn, schedule["schedule_id"])
        events = [
            BookingReminderDue(
                schedule_id=schedule["schedule_id"],
                school_id=schedule["school_id"],
                child_id=child["child_id"],
                child_name=child["given_name"],
                title=schedule["title"],
                closes_at=schedule["closes_at"],
                guardian_ids=sorted(child["guardian_ids"]),
            )
            for child in due
        ]
        await publish_many(conn, events, schedule["school_id"])
        sent += len(events)
    return sent


async def conference_reminders(app: web.Application) -> AsyncIterator[None]:
    """The job as one of the app's contexts."""

    async def job(conn: asyncpg.Connection) -> None:
        await remind_not_booked(conn)

    periodic = PeriodicJob(app[POOL], JOB_NAME, REMIND_EVERY_SECONDS, job)
    await periodic.start()
    yield
    await periodic.stop()
