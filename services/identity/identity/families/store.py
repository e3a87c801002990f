"""Children, placements and guardianships: SQL."""

import uuid
from datetime import date
from typing import Any

import asyncpg

CHILD_VIEW = """
SELECT c.child_id, c.school_id, c.external_id, c.given_name, c.tussenvoegsel, c.family_name, c.date_of_birth,
       c.photo_consent, c.left_on, g.group_id, g.name AS group_name,
       COALESCE((SELECT jsonb_agg(jsonb_build_object(
                   'guardianship_id', gs.guardianship_id, 'child_id', gs.child_id, 'email', gs.email,
                   'display_name', gs.display_name, 'linked_at', gs.linked_at,
                   'invited_at', ac.created_at,
                   'status', CASE WHEN gs.person_id IS NOT NULL THEN 'linked'
                                  WHEN ac.code_id IS NULL THEN 'not_invited'
                                  WHEN ac.expires_at <= now() THEN 'expired'
                                  ELSE 'invited' END) ORDER BY gs.created_at)
                 FROM guardianships gs
                 LEFT JOIN LATERAL (SELECT code_id, created_at, expires_at FROM access_codes a
                                    WHERE a.guardianship_id = gs.guardianship_id AND a.used_at IS NULL
                                      AND a.revoked_at IS NULL ORDER BY created_at DESC LIMIT 1) ac ON true
                 WHERE gs.child_id = c.child_id), '[]') AS guardians
FROM children c
JOIN schools s ON s.school_id = c.school_id
LEFT JOIN placements p ON p.child_id = c.child_id AND p.school_year_id = s.current_year_id
LEFT JOIN groups g ON g.group_id = p.group_id
"""


async def insert_child(
    conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID, fields: dict[str, Any]
) -> bool:
    """False when the school already has a child with that external id."""
    inserted = await conn.fetchval(
        """INSERT INTO children (child_id, school_id, external_id, given_name, tussenvoegsel, family_name,
                                 date_of_birth, photo_consent)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (school_id, external_id) WHERE external_id IS NOT NULL DO NOTHING RETURNING true""",
        child_id,
        school_id,
        fields.get("external_id"),
        fields["given_name"],
        fields.get("tussenvoegsel", ""),
        fields["family_name"],
        fields.get("date_of_birth"),
        fields.get("photo_consent", False),
    )
    return bool(inserted)


async def update_child(conn: asyncpg.Connection, child_id: uuid.UUID, changes: dict[str, Any]) -> None:
    names = [
        n
        for n in ("given_name", "tussenvoegsel", "family_name", "date_of_birth", "photo_consent")
        if n in changes
    ]
    if names:
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        await conn.execute(
            f"UPDATE children SET {assignments} WHERE child_id = $1",  # noqa: S608 - names from code
            child_id,
            *(changes[n] for n in names),
        )


async def child(conn: asyncpg.Connection, child_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"{CHILD_VIEW} WHERE c.child_id = $1", child_id)


async def children_page(
    conn: asyncpg.Connection,
    school_id: uuid.UUID,
    group_id: uuid.UUID | None,
    limit: int,
    after: list[Any] | None,
) -> list[asyncpg.Record]:
    """Children of the school (or of one group of any year), by family name, given name, id."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""{CHILD_VIEW}
            WHERE c.school_id = $1
              AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM placements pg WHERE pg.child_id = c.child_id
                                                AND pg.group_id = $2))
              AND ($4::text IS NULL OR (lower(c.family_name), lower(c.given_name), c.child_id) > ($4, $5, $6::uuid))
            ORDER BY lower(c.family_name), lower(c.given_name), c.child_id LIMIT $3""",  # noqa: S608 - constant
        school_id,
        group_id,
        limit,
        *(after if after else (None, None, None)),
    )
    return rows


async def place(conn: asyncpg.Connection, child_id: uuid.UUID, group_id: uuid.UUID) -> uuid.UUID:
    """Place the child in the group for the group's school year (replacing another group that year)."""
    school_year_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO placements (child_id, school_year_id, group_id)
           SELECT $1, school_year_id, group_id FROM groups WHERE group_id = $2
           ON CONFLICT (child_id, school_year_id) DO UPDATE SET group_id = EXCLUDED.group_id
           RETURNING school_year_id""",
        child_id,
        group_id,
    )
    return school_year_id


async def unplace(conn: asyncpg.Connection, child_id: uuid.UUID, school_year_id: uuid.UUID) -> bool:
    removed = await conn.fetchval(
        "DELETE FROM placements WHERE child_id = $1 AND school_year_id = $2 RETURNING true",
        child_id,
        school_year_id,
    )
    return bool(removed)


async def leave(conn: asyncpg.Connection, child_id: uuid.UUID, left_on: date) -> None:
    await conn.execute("UPDATE children SET left_on = $2 WHERE child_id = $1", child_id, left_on)


async def add_guardian(
    conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID, email: str, display_name: str
) -> uuid.UUID:
    """The guardianship of that address for the child (existing or new); its id."""
    guardianship_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO guardianships (guardianship_id, child_id, school_id, email, display_name)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (child_id, lower(email)) DO UPDATE
             SET display_name = CASE WHEN EXCLUDED.display_name = '' THEN guardianships.display_name
                                     ELSE EXCLUDED.display_name END
           RETURNING guardianship_id""",
        uuid.uuid4(),
        child_id,
        school_id,
        email,
        display_name,
    )
    return guardianship_id


async def remove_guardian(conn: asyncpg.Connection, guardianship_id: uuid.UUID) -> uuid.UUID | None:
    """Delete the guardianship; the account it was linked to (to re-derive), if any."""
    row = await conn.fetchrow(
        "DELETE FROM guardianships WHERE guardianship_id = $1 RETURNING person_id", guardianship_id
    )
    return row["person_id"] if row else None


async def linked_guardians(conn: asyncpg.Connection, child_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT person_id FROM guardianships WHERE child_id = $1 AND person_id IS NOT NULL", child_id
    )
    return [r["person_id"] for r in rows]
