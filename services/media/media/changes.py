"""PhotoChanged: what posts must know of a photo to let a post carry it (issue 9, cases 4 and 8).

Published in the transaction of every change: the upload accepted (processing starts at once), ready,
rejected, the tagged children or their consent changed, removed. Each publication takes a new
``revision`` from one sequence, so posts' copy never lets an older state overwrite a newer one.
"""

import uuid
from collections.abc import Sequence

import asyncpg

from shared.contracts import PhotoChanged
from shared.outbox import publish_many

# What a photo's status says to a teacher whose post names it (posts shows the reason).
UNUSED_REMOVED = "removed: no post used it within a day of its upload"
ERASED_REMOVED = "removed: a child tagged in it was erased at the school's request"

# Every photo's state with its tags and the tagged children who have no photo consent now. A child not
# (yet) known from identity counts as without consent: nobody has said yes.
_STATE = """
    SELECT p.photo_id, p.school_id, p.group_id, p.uploader_id, p.status, p.reject_reason,
           COALESCE(array_agg(t.child_id ORDER BY t.child_id) FILTER (WHERE t.child_id IS NOT NULL), '{}')
               AS children,
           COALESCE(array_agg(t.child_id ORDER BY t.child_id)
                    FILTER (WHERE t.child_id IS NOT NULL AND NOT COALESCE(c.photo_consent AND NOT c.erased, false)),
                    '{}') AS without_consent
    FROM photos p
    LEFT JOIN photo_children t ON t.photo_id = p.photo_id
    LEFT JOIN children c ON c.child_id = t.child_id
"""


async def announce(conn: asyncpg.Connection, photo_ids: Sequence[uuid.UUID]) -> int:
    """Publish the current state of these photos (those that still exist) with new revisions, in the
    caller's transaction; returns how many were published."""
    if not photo_ids:
        return 0
    rows = await conn.fetch(
        f"""WITH bumped AS (
                UPDATE photos SET revision = nextval('photo_revisions')
                WHERE photo_id = ANY($1::uuid[]) AND group_id IS NOT NULL RETURNING photo_id, revision)
            SELECT s.*, b.revision FROM ({_STATE} WHERE p.photo_id IN (SELECT photo_id FROM bumped)
                                        GROUP BY p.photo_id) s
            JOIN bumped b USING (photo_id)
            ORDER BY s.school_id, s.photo_id""",  # noqa: S608 - constant
        list(photo_ids),
    )
    await _publish(
        conn,
        [
            PhotoChanged(
                photo_id=r["photo_id"],
                school_id=r["school_id"],
                group_id=r["group_id"],
                uploader_id=r["uploader_id"],
                status=r["status"],
                reason=r["reject_reason"] if r["status"] == "rejected" else None,
                children=r["children"],
                without_consent=r["without_consent"],
                revision=r["revision"],
            )
            for r in rows
        ],
    )
    return len(rows)


async def announce_removed(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], reason: str) -> None:
    """Publish that photos are gone for good (their rows deleted in the caller's transaction). ``rows``
    hold photo_id, school_id, group_id and uploader_id."""
    revisions = await conn.fetchval(
        "SELECT array_agg(nextval('photo_revisions')) FROM generate_series(1, $1)", len(rows)
    )
    await _publish(
        conn,
        [
            PhotoChanged(
                photo_id=r["photo_id"],
                school_id=r["school_id"],
                group_id=r["group_id"],
                uploader_id=r["uploader_id"],
                status="removed",
                reason=reason,
                revision=revision,
            )
            for r, revision in zip(rows, revisions or [], strict=True)
            if r["group_id"] is not None
        ],
    )


async def _publish(conn: asyncpg.Connection, events: list[PhotoChanged]) -> None:
    by_school: dict[uuid.UUID, list[PhotoChanged]] = {}
    for event in events:
        by_school.setdefault(event.school_id, []).append(event)
    for school_id, of_school in by_school.items():
        await publish_many(conn, of_school, school_id)
