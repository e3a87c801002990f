"""The local copy of who is staff at which school, kept by every service that lets a school's admins act
for the school (posts, media).

Identity owns staff roles; each such service keeps a ``staff`` table fed by StaffChanged
events, with these columns (each service's migration creates it)::

    school_id uuid, person_id uuid, roles text[], revision bigint, PRIMARY KEY (school_id, person_id)

Events may be handled out of order, so each carries a revision and an older one never overwrites a
newer one (as in shared/membership_copy.py).
"""

import uuid

import asyncpg


async def is_admin(conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID) -> bool:
    """Whether the person is an admin of the school, as the copy holds it now."""
    found = await conn.fetchval(
        "SELECT true FROM staff WHERE school_id = $1 AND person_id = $2 AND 'admin' = ANY(roles)",
        school_id,
        person_id,
    )
    return bool(found)


async def upsert_staff(
    conn: asyncpg.Connection, school_id: uuid.UUID, person_id: uuid.UUID, roles: list[str], revision: int
) -> None:
    """Keep a person's staff roles at a school, unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO staff (school_id, person_id, roles, revision) VALUES ($1, $2, $3, $4)
           ON CONFLICT (school_id, person_id) DO UPDATE SET roles = EXCLUDED.roles, revision = EXCLUDED.revision
           WHERE staff.revision < EXCLUDED.revision""",
        school_id,
        person_id,
        roles,
        revision,
    )
