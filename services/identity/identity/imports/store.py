"""Class-list imports: SQL for the school's state an import compares with, and for the import jobs."""

import uuid
from typing import Any

import asyncpg

from identity.imports.domain import STALE_SECONDS, ImportCounts, KnownChild, Plan

IMPORT_COLUMNS = """i.import_id, i.school_id, y.name AS school_year, i.status, i.dry_run, i.skip_invalid,
    i.create_groups, i.applied, i.encoding, i.delimiter, i.columns, i.rows_total, i.rows_done, i.counts,
    i.errors, i.children, i.not_in_file, i.failure, i.created_at, i.finished_at"""


# A queued or running import whose heartbeat is older than the limit died with its process; the
# apply is one transaction, so nothing of it was written.
_ABANDONED = """UPDATE imports SET status = 'failed', finished_at = now(),
       failure = 'the service stopped during the import; nothing was written: upload the file again'
    WHERE status IN ('queued', 'running') AND heartbeat_at < now() - make_interval(secs => $1)
      AND ($2::uuid IS NULL OR import_id = $2)"""


async def school_year(
    conn: asyncpg.Connection, school_id: uuid.UUID, name: str | None
) -> asyncpg.Record | None:
    """The named year of the school (or its current one when ``name`` is None): id and name."""
    return await conn.fetchrow(
        """SELECT y.school_year_id, y.name FROM school_years y JOIN schools s USING (school_id)
           WHERE y.school_id = $1 AND (CASE WHEN $2::text IS NULL THEN y.school_year_id = s.current_year_id
                                            ELSE y.name = $2 END)""",
        school_id,
        name,
    )


async def groups_of_year(conn: asyncpg.Connection, school_year_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """Group name -> id for the year."""
    rows = await conn.fetch("SELECT name, group_id FROM groups WHERE school_year_id = $1", school_year_id)
    return {r["name"]: r["group_id"] for r in rows}


async def known_children(
    conn: asyncpg.Connection, school_id: uuid.UUID, school_year_id: uuid.UUID
) -> list[KnownChild]:
    """Every child of the school (also those who left), their group in the year and guardian addresses."""
    rows = await conn.fetch(
        """SELECT c.child_id, c.external_id, c.given_name, c.tussenvoegsel, c.family_name, c.date_of_birth,
                  c.photo_consent, c.left_on, p.group_id, g.name AS group,
                  COALESCE((SELECT array_agg(lower(gs.email)) FROM guardianships gs WHERE gs.child_id = c.child_id),
                           '{}') AS emails
           FROM children c
           LEFT JOIN placements p ON p.child_id = c.child_id AND p.school_year_id = $2
           LEFT JOIN groups g ON g.group_id = p.group_id
           WHERE c.school_id = $1""",
        school_id,
        school_year_id,
    )
    return [KnownChild(**{**dict(r), "emails": frozenset(r["emails"])}) for r in rows]


async def insert_new_children(
    conn: asyncpg.Connection,
    school_id: uuid.UUID,
    school_year_id: uuid.UUID,
    children: list[tuple[Any, ...]],
    guardians: list[tuple[uuid.UUID, str]],
) -> None:
    """New children with their placements and guardianships, three statements for any number of
    them (rows as families.store.insert_child, place and add_guardian write them, without their
    one-by-one round trips: they cannot conflict with anything, the children being new).

    ``children``: (child_id, external_id, given_name, tussenvoegsel, family_name, date_of_birth,
    photo_consent, group_id); ``guardians``: (child_id, email). The plan has matched every external id.
    """
    if not children:
        return
    columns = [list(column) for column in zip(*children, strict=True)]
    await conn.execute(
        """INSERT INTO children (child_id, school_id, external_id, given_name, tussenvoegsel, family_name,
                                 date_of_birth, photo_consent)
           SELECT c.id, $1, c.number, c.given, c.tv, c.family, c.born, c.consent
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::date[], $8::bool[])
                AS c(id, number, given, tv, family, born, consent)""",
        school_id,
        *columns[:7],
    )
    await conn.execute(
        """INSERT INTO placements (child_id, school_year_id, group_id)
           SELECT p.child_id, $1, p.group_id FROM unnest($2::uuid[], $3::uuid[]) AS p(child_id, group_id)""",
        school_year_id,
        columns[0],
        columns[7],
    )
    await conn.execute(
        """INSERT INTO guardianships (guardianship_id, child_id, school_id, email)
           SELECT gen_random_uuid(), g.child_id, $1, g.email FROM unnest($2::uuid[], $3::text[]) AS g(child_id, email)""",
        school_id,
        [child_id for child_id, _ in guardians],
        [email for _, email in guardians],
    )


async def lock_guardianships(conn: asyncpg.Connection, child_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The guardianships of the children, locked (in id order) before inviting, as
    invitations.store.invite_pending_of_child locks them."""
    rows = await conn.fetch(
        """SELECT guardianship_id FROM guardianships WHERE child_id = ANY($1)
           ORDER BY guardianship_id FOR UPDATE""",
        child_ids,
    )
    return [r["guardianship_id"] for r in rows]


async def set_number_and_return(
    conn: asyncpg.Connection, child_id: uuid.UUID, external_id: str | None, returned: bool
) -> None:
    """Give the child the administration's number (when it had none) and clear its leaving date when
    it is back on the class list."""
    await conn.execute(
        """UPDATE children SET external_id = COALESCE(external_id, $2),
                               left_on = CASE WHEN $3 THEN NULL ELSE left_on END
           WHERE child_id = $1""",
        child_id,
        external_id,
        returned,
    )


async def linked_guardians(conn: asyncpg.Connection, child_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT DISTINCT person_id FROM guardianships WHERE child_id = ANY($1) AND person_id IS NOT NULL",
        child_ids,
    )
    return [r["person_id"] for r in rows]


async def invitations_launched(conn: asyncpg.Connection, school_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT invitations_launched_at IS NOT NULL FROM schools WHERE school_id = $1", school_id
        )
    )


async def insert_import(conn: asyncpg.Connection, fields: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO imports (import_id, school_id, school_year_id, created_by, dry_run, skip_invalid,
                                create_groups, encoding, delimiter, columns, rows_total)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        fields["import_id"],
        fields["school_id"],
        fields["school_year_id"],
        fields["created_by"],
        fields["dry_run"],
        fields["skip_invalid"],
        fields["create_groups"],
        fields["encoding"],
        fields["delimiter"],
        fields["columns"],
        fields["rows_total"],
    )


async def import_view(conn: asyncpg.Connection, import_id: uuid.UUID) -> asyncpg.Record | None:
    """The import as shown; one that stopped writing progress long ago is marked failed first."""
    await conn.execute(_ABANDONED, STALE_SECONDS, import_id)
    return await conn.fetchrow(
        f"""SELECT {IMPORT_COLUMNS} FROM imports i JOIN school_years y USING (school_year_id)
            WHERE i.import_id = $1""",  # noqa: S608 - a constant
        import_id,
    )


async def progress(conn: asyncpg.Connection, import_id: uuid.UUID, status: str, rows_done: int) -> None:
    await conn.execute(
        """UPDATE imports SET status = $2, rows_done = $3, heartbeat_at = now()
           WHERE import_id = $1 AND status IN ('queued', 'running')""",
        import_id,
        status,
        rows_done,
    )


async def finish(
    conn: asyncpg.Connection, import_id: uuid.UUID, plan: Plan, counts: ImportCounts, applied: bool
) -> None:
    """Record the outcome; in the apply's own transaction, so "done" and the changes commit together."""
    await conn.execute(
        """UPDATE imports SET status = 'done', failure = NULL, applied = $2, rows_done = rows_total, counts = $3, errors = $4,
                  children = $5, not_in_file = $6, heartbeat_at = now(),
                  -- The clock, not now(): that is when the apply's transaction began.
                  finished_at = clock_timestamp()
           WHERE import_id = $1""",
        import_id,
        applied,
        counts.model_dump(),
        [e.model_dump() for e in plan.errors],
        [c.model_dump(mode="json") for c in plan.children()],
        [c.model_dump(mode="json") for c in plan.not_in_file()],
    )


async def fail(
    conn: asyncpg.Connection, import_id: uuid.UUID, failure: str, plan: Plan | None = None
) -> None:
    await conn.execute(
        """UPDATE imports SET status = 'failed', failure = $2, finished_at = now(), heartbeat_at = now(),
                  errors = COALESCE($3::jsonb, errors), counts = COALESCE($4::jsonb, counts)
           WHERE import_id = $1""",
        import_id,
        failure,
        [e.model_dump() for e in plan.errors] if plan else None,
        plan.counts().model_dump() if plan else None,
    )


async def fail_abandoned(conn: asyncpg.Connection) -> int:
    """Mark every import that stopped writing progress long ago failed (its process died)."""
    result: str = await conn.execute(_ABANDONED, STALE_SECONDS, None)
    return int(result.split()[-1])
