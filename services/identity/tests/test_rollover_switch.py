"""The school-year switch in identity (issue 5): at local midnight of the new year's first day the
guardians follow their children into the new groups; the old year's last day is the old year's to
its end; between two years no group is anyone's; each school switches in a transaction of its own.

Boundary checks run inside a transaction that is rolled back, with an explicit instant: nothing of
them stays, and the year job of the running system (which uses the real clock) cannot interfere.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg

from identity import memberships
from identity.accounts.store import ensure_account
from identity.families import store as families
from identity.schools.store import refresh_current_year
from identity.schools.years import schools_due, switch_years
from shared.app import POOL
from tests.harness.school import School, add_child, add_group, add_school_year, make_school, new_email
from tests.harness.system import System

OLD, NEW = "2026-2027", "2027-2028"
# 31 July 2027, the old year's last day: Amsterdam is at UTC+2 (summer time).
LAST_SECOND_OF_OLD_YEAR = datetime(2027, 7, 31, 21, 59, 59, tzinfo=UTC)
FIRST_MIDNIGHT_OF_NEW_YEAR = datetime(2027, 7, 31, 22, 0, 0, tzinfo=UTC)


def pool(system: System) -> asyncpg.Pool:
    return system.services["identity"].app[POOL]


class _Undo(Exception):
    pass


@contextlib.asynccontextmanager
async def rolled_back(system: System) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction that is always rolled back."""
    async with pool(system).acquire() as conn:
        with contextlib.suppress(_Undo):
            async with conn.transaction():
                yield conn
                raise _Undo


async def link_guardian(system: System, school: School, child: uuid.UUID) -> uuid.UUID:
    """An account linked to ``child`` as guardian, straight in identity's tables (no mail round)."""
    async with pool(system).acquire() as conn, conn.transaction():
        person_id, _ = await ensure_account(conn, new_email("ouder"), "Ouder", "nl")
        guardianship_id = await families.add_guardian(conn, child, school.school_id, new_email("x"), "")
        await conn.execute(
            "UPDATE guardianships SET person_id = $2, linked_at = now() WHERE guardianship_id = $1",
            guardianship_id,
            person_id,
        )
        await memberships.derive(conn, school.school_id, [person_id])
    return person_id


async def promoted_school(system: System, time_zone: str = "Europe/Amsterdam") -> tuple[School, uuid.UUID]:
    """A school in 2026-2027 with Groep 3B and a linked guardian of a child in it, promoted into
    2027-2028 (Groep 4B); the guardian's id."""
    school = await make_school(system)
    if time_zone != "Europe/Amsterdam":
        status, body = await system.call(
            "PATCH",
            "identity",
            f"/schools/{school.school_id}",
            school.admin.token,
            json={"time_zone": time_zone},
        )
        assert status == 200, body
    await add_group(system, school, "Groep 3B")
    child = await add_child(system, school, "anna", "Groep 3B", [])
    guardian = await link_guardian(system, school, child)
    await add_school_year(system, school, NEW)
    year = await pool(system).fetchval(
        "SELECT school_year_id FROM school_years WHERE school_id = $1 AND name = $2", school.school_id, NEW
    )
    status, plan = await system.call(
        "POST", "identity", f"/school-years/{year}/promotion", school.admin.token, json={}
    )
    assert status == 200, plan
    school.groups["Groep 4B"] = uuid.UUID(plan["groups"][0]["group_id"])
    return school, guardian


async def active_groups(conn: asyncpg.Connection, person_id: uuid.UUID) -> set[uuid.UUID]:
    rows = await conn.fetch("SELECT group_id FROM memberships WHERE person_id = $1 AND active", person_id)
    return {r["group_id"] for r in rows}


async def current_year(conn: asyncpg.Connection, school: School) -> str | None:
    name: str | None = await conn.fetchval(
        """SELECT y.name FROM schools s LEFT JOIN school_years y ON y.school_year_id = s.current_year_id
           WHERE s.school_id = $1""",
        school.school_id,
    )
    return name


async def membership_events(conn: asyncpg.Connection, person_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT routing_key, envelope->'payload'->>'group_id' AS group_id FROM outbox
           WHERE routing_key LIKE 'identity.membership_%' AND envelope->'payload'->>'person_id' = $1
           ORDER BY id""",
        str(person_id),
    )
    return [(r["routing_key"], r["group_id"]) for r in rows]


async def test_guardians_follow_their_children_at_local_midnight_of_the_new_years_first_day(
    system: System,
) -> None:
    school, guardian = await promoted_school(system)
    old_group, new_group = school.groups["Groep 3B"], school.groups["Groep 4B"]
    async with rolled_back(system) as conn:
        assert await active_groups(conn, guardian) == {old_group}
        events_before = len(await membership_events(conn, guardian))

        # The old year's last day is the old year's until its very end (dates are inclusive).
        assert not await refresh_current_year(conn, school.school_id, LAST_SECOND_OF_OLD_YEAR)
        assert await current_year(conn, school) == OLD
        assert await active_groups(conn, guardian) == {old_group}

        assert await refresh_current_year(conn, school.school_id, FIRST_MIDNIGHT_OF_NEW_YEAR)
        assert await current_year(conn, school) == NEW
        assert await active_groups(conn, guardian) == {new_group}
        events = (await membership_events(conn, guardian))[events_before:]
        assert sorted(events) == [
            ("identity.membership_granted", str(new_group)),
            ("identity.membership_revoked", str(old_group)),
        ]
        # A second look at the same moment changes nothing and tells no one anything.
        assert not await refresh_current_year(conn, school.school_id, FIRST_MIDNIGHT_OF_NEW_YEAR)
        assert len(await membership_events(conn, guardian)) == events_before + 2


async def test_each_school_switches_at_its_own_local_midnight(system: System) -> None:
    amsterdam, _ = await promoted_school(system)
    bonaire, _ = await promoted_school(system, "America/Kralendijk")  # UTC-4: 18:00 at Amsterdam's midnight
    async with pool(system).acquire() as conn:
        due_at_amsterdam_midnight = await schools_due(conn, FIRST_MIDNIGHT_OF_NEW_YEAR)
        due_at_bonaire_midnight = await schools_due(conn, datetime(2027, 8, 1, 4, 0, tzinfo=UTC))
        due_before = await schools_due(conn, datetime(2027, 8, 1, 3, 59, 59, tzinfo=UTC))
    assert amsterdam.school_id in due_at_amsterdam_midnight
    assert bonaire.school_id not in due_at_amsterdam_midnight
    assert bonaire.school_id not in due_before
    assert {amsterdam.school_id, bonaire.school_id} <= set(due_at_bonaire_midnight)


async def test_between_two_years_no_group_is_anyones_until_the_new_year_starts(system: System) -> None:
    school, guardian = await promoted_school(system)
    async with rolled_back(system) as conn:
        # The old year ends on 15 July; the new one starts on 1 August: a gap of two weeks.
        await conn.execute(
            "UPDATE school_years SET ends_on = '2027-07-15' WHERE school_id = $1 AND name = $2",
            school.school_id,
            OLD,
        )
        assert not await refresh_current_year(
            conn, school.school_id, datetime(2027, 7, 15, 21, 59, tzinfo=UTC)
        )
        assert await active_groups(conn, guardian) == {school.groups["Groep 3B"]}

        assert await refresh_current_year(conn, school.school_id, datetime(2027, 7, 15, 22, 0, tzinfo=UTC))
        assert await current_year(conn, school) is None
        assert await active_groups(conn, guardian) == set()

        assert not await refresh_current_year(
            conn, school.school_id, datetime(2027, 7, 25, 12, 0, tzinfo=UTC)
        )
        assert await refresh_current_year(conn, school.school_id, FIRST_MIDNIGHT_OF_NEW_YEAR)
        assert await active_groups(conn, guardian) == {school.groups["Groep 4B"]}


async def move_switch_to_today(system: System, school: School) -> None:
    """The old year ends yesterday and the new one starts today (the school's local dates)."""
    async with pool(system).acquire() as conn, conn.transaction():
        today = await conn.fetchval(
            "SELECT (now() AT TIME ZONE time_zone)::date FROM schools WHERE school_id = $1", school.school_id
        )
        await conn.execute(
            "UPDATE school_years SET ends_on = $3::date - 1 WHERE school_id = $1 AND name = $2",
            school.school_id,
            OLD,
            today,
        )
        await conn.execute(
            "UPDATE school_years SET starts_on = $3 WHERE school_id = $1 AND name = $2",
            school.school_id,
            NEW,
            today,
        )


async def test_one_school_waiting_on_a_lock_does_not_hold_up_the_others(system: System) -> None:
    stuck, _ = await promoted_school(system)
    free, free_guardian = await promoted_school(system)
    for school in (stuck, free):
        await move_switch_to_today(system, school)
    async with pool(system).acquire() as blocker, blocker.transaction():
        await blocker.execute("SELECT 1 FROM schools WHERE school_id = $1 FOR UPDATE", stuck.school_id)
        switching = asyncio.create_task(switch_years(pool(system)))

        async def free_switched() -> bool:
            async with pool(system).acquire() as conn:
                return await current_year(conn, free) == NEW

        for _ in range(200):
            if await free_switched():
                break
            await asyncio.sleep(0.05)
        # Committed, and so visible to everyone, while the other school still waits.
        assert await free_switched()
        async with pool(system).acquire() as conn:
            assert await active_groups(conn, free_guardian) == {free.groups["Groep 4B"]}
            assert await current_year(conn, stuck) == OLD
        assert not switching.done()
    report = await switching
    assert not report.failed
    async with pool(system).acquire() as conn:
        assert await current_year(conn, stuck) == NEW


async def test_a_promotion_made_after_the_new_year_began_lets_guardians_follow_at_once(
    system: System,
) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 3B")
    child = await add_child(system, school, "anna", "Groep 3B", [])
    guardian = await link_guardian(system, school, child)
    year = await add_school_year(system, school, NEW)
    await move_switch_to_today(system, school)
    report = await switch_years(pool(system))
    assert not report.failed
    async with pool(system).acquire() as conn:
        # The new year began with no groups prepared: nothing is the guardian's for now.
        assert await current_year(conn, school) == NEW
        assert await active_groups(conn, guardian) == set()

    status, plan = await system.call(
        "POST", "identity", f"/school-years/{year['school_year_id']}/promotion", school.admin.token, json={}
    )

    assert status == 200, plan
    async with pool(system).acquire() as conn:
        assert await active_groups(conn, guardian) == {uuid.UUID(plan["groups"][0]["group_id"])}
