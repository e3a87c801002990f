"""Identity's SQL."""

import uuid

import asyncpg


async def insert_school(conn: asyncpg.Connection, school_id: uuid.UUID, name: str) -> None:
    await conn.execute("INSERT INTO schools (school_id, name) VALUES ($1, $2)", school_id, name)


async def insert_person(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    school_id: uuid.UUID,
    role: str,
    email: str,
    display_name: str,
    locale: str,
    password_hash: str,
) -> bool:
    """False when the address is already taken."""
    inserted = await conn.fetchval(
        """INSERT INTO people (person_id, school_id, role, email, display_name, locale, password_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT ((lower(email))) DO NOTHING RETURNING true""",
        person_id,
        school_id,
        role,
        email,
        display_name,
        locale,
        password_hash,
    )
    return bool(inserted)


async def person(conn: asyncpg.Connection, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT person_id, school_id, role, email, display_name, locale FROM people WHERE person_id = $1",
        person_id,
    )


async def person_for_login(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT person_id, school_id, role, password_hash FROM people
           WHERE lower(email) = lower($1) AND NOT disabled""",
        email,
    )


async def set_password_hash(conn: asyncpg.Connection, person_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute("UPDATE people SET password_hash = $2 WHERE person_id = $1", person_id, password_hash)


async def insert_group(
    conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID, name: str, school_year: str
) -> bool:
    """False when the school already has a group of that name in that year."""
    inserted = await conn.fetchval(
        """INSERT INTO groups (group_id, school_id, name, school_year) VALUES ($1, $2, $3, $4)
           ON CONFLICT (school_id, school_year, name) DO NOTHING RETURNING true""",
        group_id,
        school_id,
        name,
        school_year,
    )
    return bool(inserted)


async def group(conn: asyncpg.Connection, group_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT group_id, school_id, name, school_year FROM groups WHERE group_id = $1", group_id
    )


async def grant(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID, role: str) -> int | None:
    """The new revision, or None when the person was already linked."""
    revision: int | None = await conn.fetchval(
        """INSERT INTO memberships (group_id, person_id, role, active, revision)
           VALUES ($1, $2, $3, true, nextval('membership_revisions'))
           ON CONFLICT (group_id, person_id) DO UPDATE
             SET active = true, role = EXCLUDED.role, revision = EXCLUDED.revision, changed_at = now()
             WHERE NOT memberships.active
           RETURNING revision""",
        group_id,
        person_id,
        role,
    )
    return revision


async def revoke(
    conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """The ended link's role and new revision, or None when there was no active link."""
    return await conn.fetchrow(
        """UPDATE memberships SET active = false, revision = nextval('membership_revisions'), changed_at = now()
           WHERE group_id = $1 AND person_id = $2 AND active
           RETURNING role, revision""",
        group_id,
        person_id,
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
