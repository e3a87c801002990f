"""Login's SQL: accounts by address and the attempt counters that throttle guessing."""

import asyncpg


async def account_for_login(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT person_id, password_hash FROM accounts
           WHERE lower(email) = lower($1) AND NOT disabled""",
        email,
    )


async def count_attempt(conn: asyncpg.Connection, key: str, window_seconds: int) -> int:
    """Count one login attempt for ``key`` (an address or a client IP) in the current window; return
    the window's count, this attempt included."""
    count: int = await conn.fetchval(
        """INSERT INTO login_attempts (key, window_start, attempts)
           VALUES ($1, to_timestamp(floor(extract(epoch FROM now()) / $2) * $2), 1)
           ON CONFLICT (key, window_start) DO UPDATE SET attempts = login_attempts.attempts + 1
           RETURNING attempts""",
        key,
        window_seconds,
    )
    return count


async def take_back_attempt(conn: asyncpg.Connection, key: str, window_seconds: int) -> None:
    """A successful login is no failure: its attempt no longer counts against the limit."""
    await conn.execute(
        """UPDATE login_attempts SET attempts = greatest(attempts - 1, 0)
           WHERE key = $1 AND window_start = to_timestamp(floor(extract(epoch FROM now()) / $2) * $2)""",
        key,
        window_seconds,
    )


async def forget_attempts_before(conn: asyncpg.Connection, window_seconds: int) -> None:
    await conn.execute(
        "DELETE FROM login_attempts WHERE window_start < now() - $1 * interval '1 second'", window_seconds
    )
