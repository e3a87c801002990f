"""The school-year switch (seed rule 3): at local midnight of a school's first day of a new year,
its guardians follow their children into the new groups and access to last year's groups ends.

A periodic job, run once across replicas (``shared.jobs``), finds the schools whose local date has
left their current year; the switch itself is ``store.refresh_current_year``, which re-derives that
school's memberships. Each school switches in a transaction of its own: one school's failure (or
lock wait) does not hold up or undo another's, and each school's events reach the outbox, and so
the other services, as soon as that school is done. Between two years no year is current (see
``refresh_current_year``).
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from aiohttp import web

from identity.schools import store
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.jobs import PeriodicJob

log = logging.getLogger(__name__)

# Schools switched side by side: enough to overlap one school's round trips with another's work,
# few enough to leave the pool to requests (a switch of a school of 400 pupils takes ~0.1-0.3 s).
CONCURRENT_SWITCHES = 2


@dataclass
class SwitchReport:
    switched: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)


async def schools_due(conn: asyncpg.Connection, at: datetime | None = None) -> list[uuid.UUID]:
    """Schools whose current year is not the one holding their local date at ``at`` (default now)."""
    rows = await conn.fetch(
        """SELECT s.school_id FROM schools s
           LEFT JOIN school_years y ON y.school_id = s.school_id
             AND (coalesce($1, now()) AT TIME ZONE s.time_zone)::date BETWEEN y.starts_on AND y.ends_on
           WHERE s.current_year_id IS DISTINCT FROM y.school_year_id
           ORDER BY s.school_id""",
        at,
    )
    return [r["school_id"] for r in rows]


async def switch_years(
    pool: asyncpg.Pool, at: datetime | None = None, concurrency: int = CONCURRENT_SWITCHES
) -> SwitchReport:
    """Switch every school that is due, each in its own transaction; which switched and which failed
    (a failure is logged and retried at the next run, the others are kept)."""
    async with pool.acquire() as conn:
        due = await schools_due(conn, at)
    report = SwitchReport()
    gate = asyncio.Semaphore(concurrency)

    async def switch(school_id: uuid.UUID) -> None:
        async with gate:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    changed = await store.refresh_current_year(conn, school_id, at)
            except Exception:
                # Whatever went wrong with this school, the others still switch.
                log.exception("school year switch failed", extra={"school_id": str(school_id)})
                report.failed.append(school_id)
                return
            if changed:
                report.switched.append(school_id)

    await asyncio.gather(*(switch(school_id) for school_id in due))
    return report


async def year_switch_job(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    pool = app[POOL]

    async def run(_conn: asyncpg.Connection) -> None:
        # The job's own connection only holds the once-across-replicas lock; the schools switch in
        # transactions of their own from the pool.
        report = await switch_years(pool)
        if report.switched:
            log.info("school years switched", extra={"schools": len(report.switched)})
        if report.failed:
            # Recorded in job_runs.last_error; those schools are tried again at the next run.
            raise RuntimeError(f"the school year switch failed for {len(report.failed)} schools")

    job = PeriodicJob(pool, "identity-school-years", settings.school_year_check_seconds, run)
    await job.start()
    yield
    await job.stop()
