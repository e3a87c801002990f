"""A school's launch day as a job that can be followed (issue 5): every pending guardian invited once.

A launch is a row in ``invitation_launches``; it is worked off in batches, each in one transaction
that locks the launch row and then its guardianships (in id order) before checking for an open code,
so a guardian is invited once even when two launches, or a launch and a new guardian, meet. The
replica that took the request works the launch off at once; if that replica stops, the resume job
(``resume_stalled``) finishes it on any replica.
"""

import asyncio
import logging
import uuid

import asyncpg
from aiohttp import web

from identity.invitations import store

log = logging.getLogger(__name__)

BATCH = 100
# A running launch without progress for this long has lost its worker: another one takes it over.
STALLED_SECONDS = 30

LAUNCH_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("invitation_launch_tasks")

_COLUMNS = "launch_id, school_id, status, total, invited, skipped, started_at, finished_at"
_LAUNCH = f"SELECT {_COLUMNS} FROM invitation_launches"  # noqa: S608 - constants

# The guardianships a launch goes through: of children placed in the school's current or a coming
# year who have not left, known when the launch started (later ones are invited as they are added).
_CANDIDATES = """FROM guardianships gs JOIN children c USING (child_id) JOIN schools s ON s.school_id = gs.school_id
    WHERE gs.school_id = $1 AND gs.created_at <= $2 AND c.left_on IS NULL
      AND EXISTS (SELECT 1 FROM placements p JOIN school_years y USING (school_year_id)
                  WHERE p.child_id = c.child_id AND y.ends_on >= (now() AT TIME ZONE s.time_zone)::date)"""


async def start(conn: asyncpg.Connection, school_id: uuid.UUID) -> asyncpg.Record:
    """The school's running launch, or a new one; marks the school as launched (from then on new
    guardians are invited as they are added). Returns the launch row (see ``_LAUNCH``)."""
    await conn.execute(
        "UPDATE schools SET invitations_launched_at = coalesce(invitations_launched_at, now()) WHERE school_id = $1",
        school_id,
    )
    # The school row is locked now: two launches asked for at once take turns here.
    running = await conn.fetchrow(f"{_LAUNCH} WHERE school_id = $1 AND status = 'running'", school_id)
    if running is not None:
        return running
    now = await conn.fetchval("SELECT now()")
    total = await conn.fetchval(f"SELECT count(*) {_CANDIDATES}", school_id, now)
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO invitation_launches (launch_id, school_id, status, total, started_at)
            VALUES ($1, $2, 'running', $3, $4) RETURNING {_COLUMNS}""",  # noqa: S608 - constants
        uuid.uuid4(),
        school_id,
        total,
        now,
    )
    return row


async def launch(conn: asyncpg.Connection, launch_id: uuid.UUID) -> asyncpg.Record | None:
    """The launch row (the fields of LaunchView); None if there is no such launch."""
    return await conn.fetchrow(f"{_LAUNCH} WHERE launch_id = $1", launch_id)


async def run_batch(conn: asyncpg.Connection, launch_id: uuid.UUID) -> bool:
    """Invite the next batch of the launch in the caller's transaction; False when there is nothing
    left to do (the launch is done, now or before)."""
    current = await conn.fetchrow(
        """SELECT school_id, started_at, cursor FROM invitation_launches
           WHERE launch_id = $1 AND status = 'running' FOR UPDATE""",
        launch_id,
    )
    if current is None:
        return False
    rows = await conn.fetch(
        f"""SELECT gs.guardianship_id {_CANDIDATES}
              AND gs.guardianship_id > coalesce($3, '00000000-0000-0000-0000-000000000000'::uuid)
            ORDER BY gs.guardianship_id LIMIT $4 FOR UPDATE OF gs""",
        current["school_id"],
        current["started_at"],
        current["cursor"],
        BATCH,
    )
    if not rows:
        # A guardian added by a transaction that began before the launch but committed after the
        # cursor had passed it was neither seen here nor invited there: one last look for them.
        everyone = await conn.fetch(
            f"SELECT gs.guardianship_id {_CANDIDATES} ORDER BY gs.guardianship_id FOR UPDATE OF gs",
            current["school_id"],
            current["started_at"],
        )
        missed = await store.pending_among(conn, [r["guardianship_id"] for r in everyone])
        late = len(await store.issue_many(conn, [(g, 0) for g in missed]))
        # The total becomes exact: children may have left or been placed while it ran.
        await conn.execute(
            """UPDATE invitation_launches SET status = 'done', finished_at = now(), updated_at = now(),
                      invited = invited + $2, total = invited + $2 + skipped
               WHERE launch_id = $1""",
            launch_id,
            late,
        )
        return False
    ids = [r["guardianship_id"] for r in rows]
    invited = len(await store.issue_many(conn, [(g, 0) for g in await store.pending_among(conn, ids)]))
    await conn.execute(
        """UPDATE invitation_launches SET cursor = $2, invited = invited + $3, skipped = skipped + $4,
                  total = greatest(total, invited + skipped + $3 + $4), updated_at = now()
           WHERE launch_id = $1""",
        launch_id,
        ids[-1],
        invited,
        len(ids) - invited,
    )
    return True


async def work_off(pool: asyncpg.Pool, launch_id: uuid.UUID) -> None:
    """Run the launch's batches, each in a transaction of its own, until it is done."""
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await run_batch(conn, launch_id):
                return


def work_off_soon(app: web.Application, pool: asyncpg.Pool, launch_id: uuid.UUID) -> None:
    """Work the launch off in the background of this replica; a failure is logged and left to the
    resume job."""

    async def run() -> None:
        try:
            await work_off(pool, launch_id)
        except (OSError, asyncpg.PostgresError):
            log.warning("launch stopped; the resume job takes it over", exc_info=True)

    task = asyncio.create_task(run(), name=f"launch-{launch_id}")
    app[LAUNCH_TASKS].add(task)
    task.add_done_callback(app[LAUNCH_TASKS].discard)


async def resume_stalled(pool: asyncpg.Pool) -> int:
    """Finish every running launch that made no progress for ``STALLED_SECONDS``; returns how many."""
    async with pool.acquire() as conn:
        stalled = await conn.fetch(
            """SELECT launch_id FROM invitation_launches
               WHERE status = 'running' AND updated_at < now() - $1 * interval '1 second'""",
            STALLED_SECONDS,
        )
    for row in stalled:
        await work_off(pool, row["launch_id"])
    return len(stalled)
