"""Running an import in the background: plan, then (unless a dry run) write it in ONE transaction.

The job runs as an asyncio task in the replica that took the upload; its progress goes to the
``imports`` row from a second connection, so any replica can answer GET /imports/{id} while the
apply's own transaction is still open. Never half-applied: the changes and the "done" status commit
together; a crash rolls everything back and the import is marked failed — by this replica when it
stops (SIGTERM cancels the task), otherwise by whoever reads it once its heartbeat is STALE_SECONDS
old, or by the next start of any replica. Upload the file again then: applying is idempotent.
"""

import asyncio
import contextlib
import logging
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import asyncpg
from aiohttp import web

from identity import memberships
from identity.families import store as families
from identity.families.changes import publish_child_changes
from identity.imports import store
from identity.imports.domain import (
    HEARTBEAT_SECONDS,
    CheckedRows,
    Entry,
    ImportCounts,
    Plan,
    check_rows,
    group_key,
    plan,
)
from identity.imports.parsing import Table
from identity.invitations.store import issue_many, pending_among
from identity.schools import store as schools
from shared.app import POOL

log = logging.getLogger(__name__)


# The imports this replica runs (a set subclass only: AppKey needs a class, not a generic alias).
class Tasks(set["asyncio.Task[None]"]):
    pass


IMPORT_TASKS = web.AppKey("import_tasks", Tasks)
# Imports that run at once in one replica; more wait, queued. Each running one holds a pooled
# connection for its whole transaction (and a second one now and then for its progress).
RUNNING_AT_ONCE = 2
IMPORT_SLOTS = web.AppKey("import_slots", asyncio.Semaphore)
PROGRESS_SECONDS = 0.2
# Rows written between two progress steps.
CHUNK = 100
_CHILD_FIELDS = ("given_name", "tussenvoegsel", "family_name", "date_of_birth", "photo_consent")


@dataclass(frozen=True)
class Job:
    import_id: uuid.UUID
    school_id: uuid.UUID
    school_year_id: uuid.UUID
    table: Table
    # The rows checked already (by the upload's own check of an apply), else None.
    rows: CheckedRows | None
    dry_run: bool
    skip_invalid: bool
    create_groups: bool


class Refused(Exception):
    """Applying would write rows that have problems, and the admin did not say to skip them."""

    def __init__(self, failure: str, plan: Plan) -> None:
        super().__init__(failure)
        self.failure = failure
        self.plan = plan


async def import_jobs(app: web.Application) -> AsyncIterator[None]:
    """Context: fail the imports that died with an earlier process; on stop, cancel running ones."""
    app[IMPORT_TASKS] = Tasks()
    app[IMPORT_SLOTS] = asyncio.Semaphore(RUNNING_AT_ONCE)
    async with app[POOL].acquire() as conn:
        abandoned = await store.fail_abandoned(conn)
    if abandoned:
        log.warning("imports abandoned by a stopped process marked failed", extra={"count": abandoned})
    yield
    running: Tasks = app[IMPORT_TASKS]
    tasks = [*running]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def start(app: web.Application, job: Job) -> None:
    """Run the job in the background of this replica."""
    task = asyncio.create_task(run(app[POOL], app[IMPORT_SLOTS], job), name=f"import-{job.import_id}")
    app[IMPORT_TASKS].add(task)
    task.add_done_callback(app[IMPORT_TASKS].discard)


async def check(table: Table) -> CheckedRows:
    """The rows checked off the event loop: checking thousands of addresses takes a while."""
    return await asyncio.to_thread(check_rows, table, date.today())


async def make_plan(
    conn: asyncpg.Connection,
    school_id: uuid.UUID,
    school_year_id: uuid.UUID,
    table: Table,
    create_groups: bool,
    rows: CheckedRows,
) -> Plan:
    """The plan against the school as it is now; ``rows``: the table's rows, checked (see ``check``)."""
    children = await store.known_children(conn, school_id, school_year_id)
    groups = await store.groups_of_year(conn, school_year_id)
    return plan(table, children, groups, create_groups, date.today(), rows)


class Progress:
    """Writes the status, ``rows_done`` and a heartbeat to the import's row every PROGRESS_SECONDS
    that something changed (HEARTBEAT_SECONDS otherwise), borrowing a pooled connection each time."""

    def __init__(self, pool: asyncpg.Pool, import_id: uuid.UUID) -> None:
        self.status = "queued"
        self.rows_done = 0
        self._pool = pool
        self._import_id = import_id
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def beating(self) -> AsyncIterator["Progress"]:
        self._task = asyncio.create_task(self._loop())
        try:
            yield self
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        written: tuple[str, int] | None = None
        since = 0.0
        while True:
            now = (self.status, self.rows_done)
            if now != written or since >= HEARTBEAT_SECONDS:
                try:
                    async with self._pool.acquire() as conn:
                        await store.progress(conn, self._import_id, *now)
                    written, since = now, 0.0
                except (asyncpg.PostgresError, OSError):
                    # A missed step is retried at the next one; the import itself goes on.
                    log.warning("import progress not written", exc_info=True)
            await asyncio.sleep(PROGRESS_SECONDS)
            since += PROGRESS_SECONDS


async def run(pool: asyncpg.Pool, slots: asyncio.Semaphore, job: Job) -> None:
    """Plan (and apply) the import once one of this replica's ``slots`` is free (it stays queued
    until then); its row ends "done" or "failed" with the reason."""
    try:
        async with Progress(pool, job.import_id).beating() as progress, slots:
            progress.status = "running"
            rows = job.rows if job.rows is not None else await check(job.table)
            if job.dry_run:
                async with pool.acquire() as conn:
                    result = await make_plan(
                        conn, job.school_id, job.school_year_id, job.table, job.create_groups, rows
                    )
                    await progress.stop()
                    await store.finish(conn, job.import_id, result, result.counts(), applied=False)
            else:
                await apply(pool, job, rows, progress)
    except asyncio.CancelledError:
        await _fail(
            pool,
            job.import_id,
            "the service stopped during the import; nothing was written: upload the file again",
        )
        raise
    except Refused as refused:
        await _fail(pool, job.import_id, refused.failure, refused.plan)
    except asyncpg.UniqueViolationError:
        await _fail(
            pool,
            job.import_id,
            "a child with one of these numbers was added meanwhile; nothing was written: upload the file again",
        )
    except Exception:
        log.exception("import failed", extra={"import_id": str(job.import_id)})
        await _fail(pool, job.import_id, "the import failed unexpectedly; nothing was written")


async def _fail(pool: asyncpg.Pool, import_id: uuid.UUID, failure: str, result: Plan | None = None) -> None:
    with contextlib.suppress(Exception):
        async with pool.acquire() as conn:
            await asyncio.shield(store.fail(conn, import_id, failure, result))


def _lock_key(school_id: uuid.UUID) -> int:
    return zlib.crc32(b"klaspost-import:" + school_id.bytes)


async def apply(pool: asyncpg.Pool, job: Job, rows: CheckedRows, progress: Progress) -> None:
    """Plan and write in one transaction, imports of one school one at a time (the plan is made
    under the lock, so it is the truth it is written against)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(job.school_id))
        result = await make_plan(conn, job.school_id, job.school_year_id, job.table, job.create_groups, rows)
        if result.errors and not job.skip_invalid:
            raise Refused("some rows have problems: fix them, or apply with skip_invalid=true", result)
        progress.rows_done = len(result.invalid_lines)
        counts = await write(conn, job, result, progress)
        await progress.stop()
        await store.finish(conn, job.import_id, result, counts, applied=True)


async def write(conn: asyncpg.Connection, job: Job, result: Plan, progress: Progress) -> ImportCounts:
    """Write the plan's entries in the caller's transaction, CHUNK rows at a time (so progress shows
    rows written and invited), then derive the memberships of the linked guardians whose children
    moved or came back. Returns the counts with ``invited``."""
    counts = result.counts()
    created_groups: dict[str, uuid.UUID] = {}
    for name in result.groups_to_create:
        group_id = uuid.uuid4()
        await schools.insert_group(conn, group_id, job.school_id, job.school_year_id, name)
        created_groups[group_key(name)] = group_id
    inviting = await store.invitations_launched(conn, job.school_id)
    rederive: list[uuid.UUID] = []
    for start in range(0, len(result.entries), CHUNK):
        chunk = result.entries[start : start + CHUNK]
        touched = await _write_chunk(conn, job, chunk, created_groups)
        await publish_child_changes(conn, touched)
        rederive += [
            e.child.child_id
            for e in chunk
            if e.child is not None and (e.action == "moved" or "left_on" in e.fields_changed)
        ]
        if touched and inviting:
            pending = await pending_among(conn, await store.lock_guardianships(conn, touched))
            counts.invited += len(await issue_many(conn, [(g, 0) for g in pending]))
        progress.rows_done += len(chunk)
    persons = await store.linked_guardians(conn, rederive)
    if persons:
        await memberships.derive(conn, job.school_id, persons)
    return counts


async def _write_chunk(
    conn: asyncpg.Connection, job: Job, chunk: list[Entry], created_groups: dict[str, uuid.UUID]
) -> list[uuid.UUID]:
    """New children in bulk, changes to known ones one by one; the ids of the children written."""
    new = [e for e in chunk if e.child is None]
    new_ids = [uuid.uuid4() for _ in new]
    await store.insert_new_children(
        conn,
        job.school_id,
        job.school_year_id,
        [
            (
                child_id,
                e.pupil.external_id,
                e.pupil.given_name,
                e.pupil.tussenvoegsel,
                e.pupil.family_name,
                e.pupil.date_of_birth,
                bool(e.pupil.photo_consent),
                e.group_id or created_groups[group_key(e.pupil.group)],
            )
            for child_id, e in zip(new_ids, new, strict=True)
        ],
        [(child_id, email) for child_id, e in zip(new_ids, new, strict=True) for email in e.guardians_added],
    )
    touched = list(new_ids)
    for entry in chunk:
        if entry.child is not None and entry.action != "unchanged":
            await _update_child(conn, job.school_id, entry.child.child_id, entry, created_groups)
            touched.append(entry.child.child_id)
    return touched


async def _update_child(
    conn: asyncpg.Connection,
    school_id: uuid.UUID,
    child_id: uuid.UUID,
    entry: Entry,
    created_groups: dict[str, uuid.UUID],
) -> None:
    """Write what changed for a child the school had already, with the families store's own writes."""
    pupil = entry.pupil
    values = {
        "given_name": pupil.given_name,
        "tussenvoegsel": pupil.tussenvoegsel,
        "family_name": pupil.family_name,
        "date_of_birth": pupil.date_of_birth,
        "photo_consent": pupil.photo_consent,
    }
    await families.update_child(
        conn, child_id, {f: values[f] for f in _CHILD_FIELDS if f in entry.fields_changed}
    )
    if "external_id" in entry.fields_changed or "left_on" in entry.fields_changed:
        await store.set_number_and_return(
            conn, child_id, pupil.external_id, "left_on" in entry.fields_changed
        )
    if entry.action == "moved":
        await families.place(conn, child_id, entry.group_id or created_groups[group_key(pupil.group)])
    for email in entry.guardians_added:
        await families.add_guardian(conn, child_id, school_id, email, "")
