"""Login's SQL: accounts by address, the attempt log that throttles guessing, and known clients."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# The class id of login's advisory locks (the two-key form, apart from the jobs' one-key locks).
_LOCK_CLASS = 0x4C6F67  # "Log"


async def account_for_login(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT person_id, password_hash FROM accounts
           WHERE lower(email) = lower($1) AND NOT disabled""",
        email,
    )


async def lock_keys(conn: asyncpg.Connection, keys: Sequence[str]) -> datetime:
    """Serialise attempts on the same keys until the transaction ends; returns the time after the
    locks were taken. Keys are locked in one order, so two attempts cannot deadlock."""
    for key in sorted(set(keys)):
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, key)
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


@dataclass(frozen=True)
class Recent:
    """The attempts counted for a key in a window: how many, the newest, and the ``nth`` newest
    (None when there are not that many)."""

    count: int
    newest: datetime | None
    nth_newest: datetime | None


async def recent(
    conn: asyncpg.Connection, key: str, now: datetime, window_seconds: float, nth: int
) -> Recent:
    row = await conn.fetchrow(
        """WITH w AS (
               SELECT failed_at FROM login_failures
               WHERE key = $1 AND failed_at > $2::timestamptz - $3::float8 * interval '1 second')
           SELECT (SELECT count(*) FROM w) AS count,
                  (SELECT max(failed_at) FROM w) AS newest,
                  (SELECT failed_at FROM w ORDER BY failed_at DESC OFFSET $4::int - 1 LIMIT 1) AS nth_newest""",
        key,
        now,
        window_seconds,
        max(nth, 1),
    )
    assert row is not None
    return Recent(count=row["count"], newest=row["newest"], nth_newest=row["nth_newest"])


async def count_attempt(conn: asyncpg.Connection, keys: Sequence[str], now: datetime) -> list[int]:
    """Log one attempt under each key; returns the rows' ids, to take the attempt back by."""
    rows = await conn.fetch(
        "INSERT INTO login_failures (key, failed_at) SELECT unnest($1::text[]), $2 RETURNING id",
        list(keys),
        now,
    )
    return [row["id"] for row in rows]


async def take_back(conn: asyncpg.Connection, ids: Sequence[int], clear_keys: Sequence[str] = ()) -> None:
    """A successful attempt is no failure: forget its rows, and every row of ``clear_keys``."""
    await conn.execute(
        "DELETE FROM login_failures WHERE id = ANY($1::bigint[]) OR key = ANY($2::text[])",
        list(ids),
        list(clear_keys),
    )


async def known_clients(
    conn: asyncpg.Connection, email: str, clients: Sequence[str], max_age_days: int
) -> set[str]:
    """Which of ``clients`` logged in to ``email`` within the last ``max_age_days`` days."""
    rows = await conn.fetch(
        """SELECT client FROM known_clients
           WHERE email = $1 AND client = ANY($2::text[]) AND last_success_at > now() - $3::int * interval '1 day'""",
        email,
        list(clients),
        max_age_days,
    )
    return {row["client"] for row in rows}


async def remember_clients(conn: asyncpg.Connection, email: str, clients: Sequence[str]) -> None:
    await conn.execute(
        """INSERT INTO known_clients (email, client, last_success_at)
           SELECT $1, unnest($2::text[]), now()
           ON CONFLICT (email, client) DO UPDATE SET last_success_at = excluded.last_success_at""",
        email,
        list(clients),
    )


async def email_of_reset(conn: asyncpg.Connection, token_hash: bytes) -> str | None:
    email: str | None = await conn.fetchval(
        "SELECT a.email FROM password_resets r JOIN accounts a USING (person_id) WHERE r.token_hash = $1",
        token_hash,
    )
    return email


async def account_for_reset(conn: asyncpg.Connection, email: str) -> uuid.UUID | None:
    person_id: uuid.UUID | None = await conn.fetchval(
        "SELECT person_id FROM accounts WHERE lower(email) = lower($1) AND NOT disabled", email
    )
    return person_id


async def forget_old(conn: asyncpg.Connection, attempts_kept_seconds: float, known_days: int) -> None:
    """Housekeeping: attempts older than every window, clients not seen for ``known_days`` days,
    and reset links expired a day ago."""
    await conn.execute(
        "DELETE FROM login_failures WHERE failed_at < now() - $1::float8 * interval '1 second'",
        attempts_kept_seconds,
    )
    await conn.execute(
        "DELETE FROM known_clients WHERE last_success_at < now() - $1::int * interval '1 day'", known_days
    )
    await conn.execute("DELETE FROM password_resets WHERE expires_at < now() - interval '1 day'")
