"""Posts' copy of identity's groups: GroupChanged is applied only when it is newer than what the copy
holds, so a rename handled out of order does not undo a later one."""

import uuid
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from posts.app import spec
from posts.events import handlers
from shared.contracts import GroupChanged
from shared.db import create_pool
from shared.envelope import envelope
from shared.migrations import migrate
from shared.testing.infra import create_database, drop_database


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[asyncpg.Pool]:
    database_url = await create_database("posts")
    try:
        pool = await create_pool(database_url, 2)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, spec().migrations)
            yield pool
        finally:
            await pool.close()
    finally:
        await drop_database(database_url)


async def handle(pool: asyncpg.Pool, event: GroupChanged) -> None:
    handler = handlers.by_type[event.type]
    async with pool.acquire() as conn, conn.transaction():
        await handler.run(conn, envelope(event, event.school_id), event)


def changed(group_id: uuid.UUID, school_id: uuid.UUID, name: str, year: str, revision: int) -> GroupChanged:
    return GroupChanged(
        group_id=group_id, school_id=school_id, name=name, school_year=year, revision=revision
    )


async def test_a_group_change_is_copied_and_a_newer_one_renames_it(pool: asyncpg.Pool) -> None:
    group_id, school_id = uuid.uuid4(), uuid.uuid4()

    await handle(pool, changed(group_id, school_id, "Groep 3B", "2026-2027", 1))
    await handle(pool, changed(group_id, school_id, "Groep 3 Bijen", "2026-2027", 2))

    row = await pool.fetchrow("SELECT * FROM groups WHERE group_id = $1", group_id)
    assert dict(row) == {
        "group_id": group_id,
        "school_id": school_id,
        "name": "Groep 3 Bijen",
        "school_year": "2026-2027",
        "revision": 2,
        "year_starts_on": None,
        "year_ends_on": None,
    }


async def test_the_school_years_dates_are_copied_and_an_event_without_them_keeps_them(
    pool: asyncpg.Pool,
) -> None:
    group_id, school_id = uuid.uuid4(), uuid.uuid4()
    dated = changed(group_id, school_id, "Groep 5", "2026-2027", 1).model_copy(
        update={"year_starts_on": date(2026, 8, 24), "year_ends_on": date(2027, 7, 9)}
    )

    await handle(pool, dated)
    await handle(pool, changed(group_id, school_id, "Groep 5A", "2026-2027", 2))

    row = await pool.fetchrow(
        "SELECT name, year_starts_on, year_ends_on FROM groups WHERE group_id = $1", group_id
    )
    assert tuple(row) == ("Groep 5A", date(2026, 8, 24), date(2027, 7, 9))


async def test_an_older_group_change_handled_late_does_not_undo_a_newer_one(pool: asyncpg.Pool) -> None:
    group_id, school_id = uuid.uuid4(), uuid.uuid4()

    await handle(pool, changed(group_id, school_id, "Groep 4B", "2027-2028", 5))
    await handle(pool, changed(group_id, school_id, "Groep 3B", "2026-2027", 4))
    await handle(pool, changed(group_id, school_id, "Groep 3B", "2026-2027", 5))

    row = await pool.fetchrow("SELECT name, school_year, revision FROM groups WHERE group_id = $1", group_id)
    assert tuple(row) == ("Groep 4B", "2027-2028", 5)


async def test_a_group_change_never_moves_a_group_to_another_school(pool: asyncpg.Pool) -> None:
    group_id, school_id = uuid.uuid4(), uuid.uuid4()

    await handle(pool, changed(group_id, school_id, "Groep 3B", "2026-2027", 1))
    await handle(pool, changed(group_id, uuid.uuid4(), "Groep 3B", "2026-2027", 2))

    assert await pool.fetchval("SELECT school_id FROM groups WHERE group_id = $1", group_id) == school_id
