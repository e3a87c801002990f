"""Periodic jobs that run once across all replicas: each run takes a transaction-level advisory
lock keyed on the job's name; a replica that cannot take it skips that round."""

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable

import asyncpg

from shared.consumer import error_text

log = logging.getLogger(__name__)


def _lock_key(name: str) -> int:
    return zlib.crc32(f"klaspost-job:{name}".encode())


async def run_once(
    pool: asyncpg.Pool, name: str, job: Callable[[asyncpg.Connection], Awaitable[None]]
) -> bool:
    """Run ``job`` if no other replica is running it now; return whether it ran."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _lock_key(name)):
            return False
        await conn.execute(
            """INSERT INTO job_runs (name, last_start) VALUES ($1, now())
               ON CONFLICT (name) DO UPDATE SET last_start = now()""",
            name,
        )
        try:
            async with conn.transaction():
                await job(conn)
        except Exception as exc:
            # Without what the job was given: a job that makes events (invitation reminders) may fail
            # validating one that carries an access code.
            await conn.execute("UPDATE job_runs SET last_error = $2 WHERE name = $1", name, error_text(exc))
            log.exception("job failed", extra={"job": name})
        else:
            await conn.execute(
                "UPDATE job_runs SET last_finish = now(), last_error = NULL WHERE name = $1", name
            )
        return True


class PeriodicJob:
    def __init__(
        self,
        pool: asyncpg.Pool,
        name: str,
        every_seconds: float,
        job: Callable[[asyncpg.Connection], Awaitable[None]],
    ) -> None:
        self.name = name
        self._pool = pool
        self._every = every_seconds
        self._job = job
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"job-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await run_once(self._pool, self.name, self._job)
            except (OSError, asyncpg.PostgresError):
                log.warning("job could not run", extra={"job": self.name}, exc_info=True)
            await asyncio.sleep(self._every)
