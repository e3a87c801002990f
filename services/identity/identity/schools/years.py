"""The school-year switch (seed rule 3): at local midnight of a school's first day of a new year,
its guardians follow their children into the new groups and access to last year's groups ends.

A periodic job, run once across replicas (``shared.jobs``), checks every school's local date; the
switch itself is ``store.refresh_current_year``, which re-derives that school's memberships.
"""

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from identity.schools import store
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.jobs import PeriodicJob


async def switch_years(conn: asyncpg.Connection) -> int:
    """Switch every school whose current year is not the one holding its local today; how many did."""
    due = await conn.fetch(
        """SELECT s.school_id FROM schools s
           LEFT JOIN school_years y ON y.school_id = s.school_id
             AND (now() AT TIME ZONE s.time_zone)::date BETWEEN y.starts_on AND y.ends_on
           WHERE s.current_year_id IS DISTINCT FROM y.school_year_id"""
    )
    switched = 0
    for row in due:
        switched += await store.refresh_current_year(conn, row["school_id"])
    return switched


async def year_switch_job(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)

    async def run(conn: asyncpg.Connection) -> None:
        await switch_years(conn)

    job = PeriodicJob(app[POOL], "identity-school-years", settings.school_year_check_seconds, run)
    await job.start()
    yield
    await job.stop()
