"""ChildChanged: the copies other services keep of a child follow identity's children (issue 9).

Posts keeps a child's name (sign-ups, conference bookings), media the photo consent (photos a
teacher tagged the child in). A trigger (migration 010) gives a child a new ``revision`` whenever
the name or the consent changes, whoever writes it; ``publish_child_changes`` publishes each child
whose revision is ahead of what was published, in the caller's transaction. Every writer of
children calls it after writing (families API, class-list import); calling it when nothing changed
publishes nothing. ``child_changed_events`` gives the current state of a school's (or every)
child, for an operator's republish of the copies.
"""

import uuid
from collections.abc import Sequence

import asyncpg

from shared.contracts import ChildChanged
from shared.outbox import publish_many

# The family name as the contract carries it: with the tussenvoegsel ('de Vries').
_CHILD = """
    SELECT child_id, school_id, given_name, photo_consent, revision,
           btrim(tussenvoegsel || ' ' || family_name) AS family_name
    FROM children
"""


def _event(row: asyncpg.Record) -> ChildChanged:
    return ChildChanged(
        child_id=row["child_id"],
        school_id=row["school_id"],
        given_name=row["given_name"],
        family_name=row["family_name"],
        photo_consent=row["photo_consent"],
        revision=row["revision"],
    )


async def publish_child_changes(conn: asyncpg.Connection, child_ids: Sequence[uuid.UUID]) -> int:
    """Publish ChildChanged for each of ``child_ids`` whose name or consent changed since it was last
    published (a new child too), and mark it published. Runs in the caller's transaction; returns
    the number of events."""
    if not child_ids:
        return 0
    rows = await conn.fetch(
        f"""WITH due AS (
                UPDATE children SET published_revision = revision
                WHERE child_id = ANY($1::uuid[]) AND revision > published_revision
                RETURNING child_id)
            {_CHILD} WHERE child_id IN (SELECT child_id FROM due) ORDER BY school_id, child_id""",  # noqa: S608 - constant
        list(child_ids),
    )
    by_school: dict[uuid.UUID, list[ChildChanged]] = {}
    for row in rows:
        by_school.setdefault(row["school_id"], []).append(_event(row))
    for school_id, events in by_school.items():
        await publish_many(conn, events, school_id)
    return len(rows)


async def child_changed_events(
    conn: asyncpg.Connection, school_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, ChildChanged]]:
    """The current state of every child of the school (None: of every school) as (school_id, event),
    for republishing the copies; consumers keep the newest revision, so a republish changes nothing
    that is current. Erased children are gone and give nothing."""
    rows = await conn.fetch(
        f"{_CHILD} WHERE $1::uuid IS NULL OR school_id = $1 ORDER BY school_id, child_id",
        school_id,
    )
    return [(row["school_id"], _event(row)) for row in rows]
