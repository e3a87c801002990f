"""The invitations' background work: launches worked off, reminders, old attempt counters forgotten."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from identity.invitations import launches, reminders, throttle
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.jobs import PeriodicJob


async def invitation_jobs(app: web.Application) -> AsyncIterator[None]:
    """Start the reminder and launch-resume jobs (each runs once across replicas) and keep the set
    of this replica's launch tasks; stop them all on shutdown."""
    settings = settings_of(app, Settings)
    pool = app[POOL]
    running: set[asyncio.Task[None]] = set()
    app[launches.LAUNCH_TASKS] = running

    async def remind(conn: asyncpg.Connection) -> None:
        await reminders.send_due_reminders(conn)
        await throttle.forget_old_attempts(conn)

    async def resume(_: asyncpg.Connection) -> None:
        await launches.resume_stalled(pool)

    jobs = [
        PeriodicJob(
            pool, "identity-invitation-reminders", settings.invitation_reminders_every_seconds, remind
        ),
        PeriodicJob(pool, "identity-invitation-launches", settings.invitation_launch_resume_seconds, resume),
    ]
    for job in jobs:
        await job.start()
    yield
    for job in jobs:
        await job.stop()
    tasks = list(running)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
