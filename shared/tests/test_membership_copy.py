"""The local membership copy holds up when events come out of order or twice."""

import uuid

import asyncpg

from shared import membership_copy


async def test_an_older_grant_after_a_revocation_does_not_let_the_person_back_in(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database
    group, person = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await membership_copy.apply(conn, group, person, "guardian", False, 2)  # the revocation, first
        await membership_copy.apply(conn, group, person, "guardian", True, 1)  # the older grant, late
        assert await membership_copy.role_in(conn, group, person) is None


async def test_a_newer_grant_after_a_revocation_does_let_the_person_in(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database
    group, person = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await membership_copy.apply(conn, group, person, "teacher", True, 1)
        await membership_copy.apply(conn, group, person, "teacher", False, 2)
        await membership_copy.apply(conn, group, person, "teacher", True, 3)
        await membership_copy.apply(conn, group, person, "teacher", True, 3)  # a duplicate
        assert await membership_copy.role_in(conn, group, person) == "teacher"


async def children_of(conn: asyncpg.Connection, group: uuid.UUID, person: uuid.UUID) -> list[uuid.UUID]:
    found: list[uuid.UUID] = await conn.fetchval(
        "SELECT children FROM memberships WHERE group_id = $1 AND person_id = $2", group, person
    )
    return found


async def test_the_children_a_guardian_belongs_through_follow_the_newest_grant(
    database: tuple[str, asyncpg.Pool],
) -> None:
    _, pool = database
    group, person = uuid.uuid4(), uuid.uuid4()
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])
    async with pool.acquire() as conn:
        await membership_copy.apply(conn, group, person, "guardian", True, 1, [first])
        await membership_copy.apply(conn, group, person, "guardian", True, 3, [first, second])
        await membership_copy.apply(conn, group, person, "guardian", True, 2, [second])  # older, late
        assert await children_of(conn, group, person) == [first, second]
        await membership_copy.apply(conn, group, person, "guardian", False, 4, [])
        assert await children_of(conn, group, person) == []
        # A copy that does not keep children leaves the column as it is.
        await membership_copy.apply(conn, group, person, "guardian", True, 5)
        assert await children_of(conn, group, person) == []
        assert await membership_copy.role_in(conn, group, person) == "guardian"
