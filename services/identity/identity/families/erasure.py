"""A child's erasure at the school's request (GDPR art. 17; issue 9).

``POST /children/{child_id}/erasure`` by an admin of the child's school, in one transaction: the
child's guardianships (their access codes with them), placements and the child's own row are
deleted, the child's name is blanked in import reports and in ChildChanged events already relayed,
the guardians' memberships are derived again (a guardian with no other child in a group loses it at
once), and ChildErased is published so that media removes every photo tagged with the child and
posts the child's name, bookings and sign-ups. What stays is a record without personal data
(``child_erasures``: ids, who, when). The child's id answers 404 afterwards, as any unknown id.
"""

import uuid

import asyncpg
from aiohttp import web

from identity import memberships
from identity.access import require_admin_of
from identity.families.domain import ErasureView
from shared.app import POOL
from shared.contracts import ChildErased
from shared.http import json_response, path_id
from shared.outbox import publish
from shared.tokens import require_caller

ERASED_NAME = "(gewist)"


async def erase_child(
    conn: asyncpg.Connection, child_id: uuid.UUID, school_id: uuid.UUID, by: uuid.UUID
) -> ErasureView:
    """Erase the child in the caller's transaction and publish ChildErased; the record of it."""
    # The child's row first, locked: a concurrent erasure waits here and then finds no child.
    name = await conn.fetchrow(
        "SELECT given_name, tussenvoegsel, family_name FROM children WHERE child_id = $1 FOR UPDATE", child_id
    )
    codes = await conn.fetch(
        """SELECT a.code_id::text FROM access_codes a JOIN guardianships g USING (guardianship_id)
           WHERE g.child_id = $1""",
        child_id,
    )
    guardians = await conn.fetch(
        "DELETE FROM guardianships WHERE child_id = $1 RETURNING person_id", child_id
    )
    placements = await conn.fetchval(
        "WITH gone AS (DELETE FROM placements WHERE child_id = $1 RETURNING 1) SELECT count(*) FROM gone",
        child_id,
    )
    await conn.execute("DELETE FROM children WHERE child_id = $1", child_id)
    await _scrub_imports(conn, school_id, child_id, name)
    # Relayed events naming the child (ChildChanged, the invitations' child_name) leave the outbox;
    # unsent ones still go out: ChildErased follows them.
    await conn.execute(
        """DELETE FROM outbox WHERE published_at IS NOT NULL
             AND ((routing_key = 'identity.child_changed' AND envelope -> 'payload' ->> 'child_id' = $1)
               OR (routing_key = 'identity.invitation_issued'
                   AND envelope -> 'payload' ->> 'invitation_id' = ANY($2::text[])))""",
        str(child_id),
        [r["code_id"] for r in codes],
    )
    persons = sorted({r["person_id"] for r in guardians if r["person_id"] is not None})
    changed = await memberships.derive(conn, school_id, persons) if persons else 0
    erased_at = await conn.fetchval(
        "INSERT INTO child_erasures (child_id, school_id, erased_by) VALUES ($1, $2, $3) RETURNING erased_at",
        child_id,
        school_id,
        by,
    )
    await publish(conn, ChildErased(child_id=child_id, school_id=school_id), school_id)
    return ErasureView(
        child_id=child_id,
        school_id=school_id,
        erased_at=erased_at,
        placements_removed=placements,
        guardianships_removed=len(guardians),
        memberships_changed=changed,
    )


async def _scrub_imports(
    conn: asyncpg.Connection, school_id: uuid.UUID, child_id: uuid.UUID, name: asyncpg.Record | None
) -> None:
    """Blank the child's name in the school's import reports: rows naming the child's id, and rows
    that created a child of exactly that name (they carry no id)."""
    full = (
        " ".join(p for p in (name["given_name"], name["tussenvoegsel"], name["family_name"]) if p)
        if name
        else ""
    )
    await conn.execute(
        """UPDATE imports SET
             children = (SELECT COALESCE(jsonb_agg(CASE WHEN e->>'child_id' = $2 OR (e->>'child_id' IS NULL AND e->>'name' = $3)
                                                      THEN e || jsonb_build_object('name', $4::text, 'guardians_added', '[]'::jsonb)
                                                      ELSE e END ORDER BY n), '[]')
                         FROM jsonb_array_elements(children) WITH ORDINALITY AS x(e, n)),
             not_in_file = (SELECT COALESCE(jsonb_agg(CASE WHEN e->>'child_id' = $2
                                                         THEN e || jsonb_build_object('name', $4::text)
                                                         ELSE e END ORDER BY n), '[]')
                            FROM jsonb_array_elements(not_in_file) WITH ORDINALITY AS x(e, n))
           WHERE school_id = $1 AND (children::text LIKE '%' || $2 || '%' OR not_in_file::text LIKE '%' || $2 || '%'
                                     OR ($3 <> '' AND children::text LIKE '%' || $3 || '%'))""",
        school_id,
        str(child_id),
        full,
        ERASED_NAME,
    )


async def request_erasure(request: web.Request) -> web.Response:
    """An admin of the child's school erases the child; 404 for anyone else and for an erased child."""
    caller = require_caller(request)
    child_id = path_id(request, "child_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(conn, caller, "children", "child_id", child_id, "child")
        view = await erase_child(conn, child_id, school_id, caller.person_id)
    return json_response(view)
