"""Who may do what in identity: decided per request from identity's own tables, never from token
claims (a token names an account only; see ``shared.tokens.Caller``).

Everything of a school that the caller may not manage answers 404, as if it did not exist, so that
ids of another school cannot be probed.
"""

import uuid

import asyncpg

from shared.errors import NotFound
from shared.tokens import Caller


async def is_admin(conn: asyncpg.Connection, person_id: uuid.UUID, school_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM staff WHERE school_id = $1 AND person_id = $2 AND role = 'admin'",
            school_id,
            person_id,
        )
    )


async def require_admin(conn: asyncpg.Connection, caller: Caller, school_id: uuid.UUID) -> None:
    """The caller administers the school; otherwise 404 "no such school"."""
    if not await is_admin(conn, caller.person_id, school_id):
        raise NotFound("no such school")


async def require_admin_of(
    conn: asyncpg.Connection, caller: Caller, table: str, id_column: str, object_id: uuid.UUID, noun: str
) -> uuid.UUID:
    """The school of a row in ``table`` that the caller administers; otherwise 404 "no such <noun>".

    ``table`` and ``id_column`` are fixed names from our own code, never input.
    """
    school_id: uuid.UUID | None = await conn.fetchval(
        f"SELECT school_id FROM {table} WHERE {id_column} = $1",  # noqa: S608 - names from code only
        object_id,
    )
    if school_id is None or not await is_admin(conn, caller.person_id, school_id):
        raise NotFound(f"no such {noun}")
    return school_id
