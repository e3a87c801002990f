"""Accounts' SQL: one account per email address across the deployment."""

import uuid

import asyncpg

from shared.contracts import AccountChanged
from shared.outbox import publish


async def account(conn: asyncpg.Connection, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT person_id, email, display_name, locale, password_hash IS NOT NULL AS has_password "
        "FROM accounts WHERE person_id = $1",
        person_id,
    )


async def account_by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT person_id, email, display_name, locale, password_hash, disabled FROM accounts "
        "WHERE lower(email) = lower($1)",
        email,
    )


async def publish_account(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    """Give the account a new revision and tell the other services its contact details."""
    row = await conn.fetchrow(
        """UPDATE accounts SET revision = nextval('change_revisions') WHERE person_id = $1
           RETURNING person_id, email, display_name, locale, revision""",
        person_id,
    )
    assert row is not None
    await publish(conn, AccountChanged(**dict(row)), None)


async def ensure_account(
    conn: asyncpg.Connection,
    email: str,
    display_name: str,
    locale: str,
    password_hash: str | None = None,
) -> tuple[uuid.UUID, bool]:
    """The account of ``email``, made (without a password unless given) when there is none yet.

    Returns (person_id, created). An existing account is left as it is: nobody but its owner
    changes its name or password.
    """
    person_id = uuid.uuid4()
    created = await conn.fetchval(
        """INSERT INTO accounts (person_id, email, display_name, locale, password_hash)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT ((lower(email))) DO NOTHING RETURNING true""",
        person_id,
        email,
        display_name,
        locale,
        password_hash,
    )
    if created:
        await publish_account(conn, person_id)
        return person_id, True
    existing = await account_by_email(conn, email)
    assert existing is not None
    return existing["person_id"], False


async def set_password_hash(conn: asyncpg.Connection, person_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(
        "UPDATE accounts SET password_hash = $2 WHERE person_id = $1", person_id, password_hash
    )


async def staff_roles(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT s.school_id, s.name AS school_name, array_agg(st.role ORDER BY st.role) AS roles
           FROM staff st JOIN schools s USING (school_id) WHERE st.person_id = $1
           GROUP BY s.school_id, s.name ORDER BY s.name""",
        person_id,
    )
    return rows


async def children_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    """The children the account is a linked guardian of, with their group in the current year."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT c.child_id, c.school_id, s.name AS school_name, c.given_name, c.tussenvoegsel,
                  c.family_name, g.group_id, g.name AS group_name
           FROM guardianships gs
           JOIN children c USING (child_id)
           JOIN schools s ON s.school_id = c.school_id
           LEFT JOIN placements p ON p.child_id = c.child_id AND p.school_year_id = s.current_year_id
           LEFT JOIN groups g ON g.group_id = p.group_id
           WHERE gs.person_id = $1 AND c.left_on IS NULL
           ORDER BY s.name, c.given_name""",
        person_id,
    )
    return rows


async def taught_groups(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT g.group_id, g.name AS group_name, g.school_id, s.name AS school_name
           FROM teaching t JOIN groups g USING (group_id) JOIN schools s ON s.school_id = g.school_id
           WHERE t.person_id = $1 AND g.school_year_id = s.current_year_id
           ORDER BY s.name, g.name""",
        person_id,
    )
    return rows
