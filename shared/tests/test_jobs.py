"""Periodic jobs run once across replicas and record how each run ended."""

import asyncio
import secrets

import asyncpg
from pydantic import BaseModel, Field

from shared.housekeeping import trim_outbox_and_inbox
from shared.jobs import run_once


async def test_two_replicas_starting_a_job_together_run_it_once(database: tuple[str, asyncpg.Pool]) -> None:
    _, pool = database
    runs: list[int] = []
    started = asyncio.Event()

    async def job(_conn: asyncpg.Connection) -> None:
        runs.append(1)
        started.set()
        await asyncio.sleep(0.3)

    first = asyncio.create_task(run_once(pool, "nightly", job))
    await started.wait()
    second = await run_once(pool, "nightly", job)
    assert await first is True
    assert second is False
    assert runs == [1]
    row = await pool.fetchrow("SELECT last_finish, last_error FROM job_runs WHERE name = 'nightly'")
    assert row["last_finish"] is not None
    assert row["last_error"] is None


async def test_a_failing_job_is_recorded_and_its_changes_rolled_back(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database

    async def job(conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO effects (event_id, n) VALUES (gen_random_uuid(), 99)")
        raise RuntimeError("disk full")

    assert await run_once(pool, "broken", job) is True
    assert await pool.fetchval("SELECT count(*) FROM effects WHERE n = 99") == 0
    assert "disk full" in await pool.fetchval("SELECT last_error FROM job_runs WHERE name = 'broken'")


async def test_housekeeping_removes_only_old_sent_events_and_old_inbox_rows(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO outbox (event_id, routing_key, envelope, created_at, published_at) VALUES
               (gen_random_uuid(), 'old.sent', '{}', now() - interval '9 days', now() - interval '8 days'),
               (gen_random_uuid(), 'new.sent', '{}', now(), now()),
               (gen_random_uuid(), 'old.unsent', '{}', now() - interval '9 days', NULL)"""
        )
        await conn.execute(
            """INSERT INTO inbox (event_id, handler, handled_at) VALUES
               (gen_random_uuid(), 'old', now() - interval '31 days'), (gen_random_uuid(), 'new', now())"""
        )
        await trim_outbox_and_inbox(conn, outbox_days=7, inbox_days=30)
        kept = {r["routing_key"] for r in await conn.fetch("SELECT routing_key FROM outbox")}
        assert {"new.sent", "old.unsent"} <= kept
        assert "old.sent" not in kept
        assert {
            r["handler"]
            for r in await conn.fetch("SELECT handler FROM inbox WHERE handler IN ('old', 'new')")
        } == {"new"}


async def test_a_job_failing_on_an_event_it_makes_records_no_secret_of_it(
    database: tuple[str, asyncpg.Pool],
) -> None:
    """A job that makes events with secrets (identity's invitation reminders) and fails validating
    one: job_runs.last_error says which field was wrong, not what it held (pydantic's repr does)."""
    _, pool = database
    code = secrets.token_urlsafe(12)

    class Reminder(BaseModel):
        access_code: str
        email: str = Field(pattern="@")

    async def job(_conn: asyncpg.Connection) -> None:
        Reminder.model_validate({"access_code": code, "email": "geen adres"})

    assert await run_once(pool, "reminders", job)
    error = await pool.fetchval("SELECT last_error FROM job_runs WHERE name = 'reminders'")
    assert code not in error
    assert "email: String should match pattern" in error
