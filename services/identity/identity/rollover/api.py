"""HTTP handler for promoting the groups of one school year into the next (issue 5)."""

import uuid

import asyncpg
from aiohttp import web

from identity import memberships
from identity.access import require_admin_of
from identity.rollover import store
from identity.rollover.domain import PlannedGroup, Promote, PromotionPlan, Successor, refusal, successors
from identity.schools import store as schools
from shared.app import POOL
from shared.errors import Conflict
from shared.http import json_response, path_id, read_json
from shared.tokens import require_caller


async def promote_groups(request: web.Request) -> web.Response:
    """Make the target year's groups from the source year's, place their children and assign the
    teachers given, in one transaction. Running it again changes nothing; a dry run only reads."""
    target_id = path_id(request, "school_year_id")
    caller = require_caller(request)
    command = await read_json(request, Promote)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(
            conn, caller, "school_years", "school_year_id", target_id, "school year"
        )
        plan = await promote(conn, school_id, target_id, command)
    return json_response(plan)


async def promote(
    conn: asyncpg.Connection, school_id: uuid.UUID, target_id: uuid.UUID, command: Promote
) -> PromotionPlan:
    """The promotion into school year ``target_id`` of ``school_id`` as ``command`` asks, in the
    caller's transaction (only read when ``command.dry_run``).

    Raises ValidationFailed (422) when the source year is unknown or does not end before the target
    starts, or the plan names groups or teachers that do not fit; Conflict (409) when a group of the
    successor's name already holds other children, or the group was promoted under another name.
    """
    target = await store.lock_school_year(conn, target_id)
    assert target is not None
    source = await store.source_year(conn, school_id, target, command.from_school_year)
    if source is None:
        raise refusal("from_school_year", "the school has no such school year before this one")
    if source["ends_on"] >= target["starts_on"]:
        raise refusal(
            "from_school_year",
            f"{target['name']} (from {target['starts_on']}) does not start after {source['name']}"
            f" ends ({source['ends_on']})",
        )
    planned, skipped = successors(
        await store.source_groups(conn, source["school_year_id"], target_id), command
    )
    await _require_teachers(conn, school_id, command)
    groups = await _successor_groups(conn, target_id, planned)
    plan = PromotionPlan(
        from_school_year=source["name"],
        to_school_year=target["name"],
        dry_run=command.dry_run,
        groups=[
            PlannedGroup(
                from_group_id=s.source.group_id,
                from_name=s.source.name,
                group_id=group_id,
                name=s.name,
                new=new,
                children_placed=s.source.children - s.source.already_placed,
                children_already_placed=s.source.already_placed,
                teachers=list(s.teachers),
            )
            for s, (group_id, new) in zip(planned, groups, strict=True)
        ],
        not_promoted=skipped,
    )
    if not command.dry_run:
        await _carry_out(conn, school_id, target_id, planned, plan)
    return plan


async def _require_teachers(conn: asyncpg.Connection, school_id: uuid.UUID, command: Promote) -> None:
    for i, group in enumerate(command.groups):
        if group.teachers and await store.non_teachers(conn, school_id, group.teachers):
            raise refusal(f"groups.{i}.teachers", "not every one of them is a teacher of the school")


async def _successor_groups(
    conn: asyncpg.Connection, target_id: uuid.UUID, planned: list[Successor]
) -> list[tuple[uuid.UUID, bool]]:
    """For each successor, the target year's group it is (id, False) or a new id (id, True).

    A group of that name is taken over when it holds no children from elsewhere (an admin may have
    made it by hand); one that does is refused, and so is a second promotion under another name.
    """
    existing = await store.target_groups(conn, target_id)
    by_name = {r["name"]: r for r in existing}
    by_source = {r["promoted_from"]: r for r in existing if r["promoted_from"] is not None}
    found: list[tuple[uuid.UUID, bool]] = []
    for successor in planned:
        source_id = successor.source.group_id
        earlier = by_source.get(source_id)
        if earlier is not None and earlier["name"] != successor.name:
            raise Conflict(
                f"'{successor.source.name}' was already promoted to '{earlier['name']}';"
                " rename that group instead",
                {"group_id": str(earlier["group_id"])},
            )
        same_name = by_name.get(successor.name)
        if same_name is None:
            found.append((uuid.uuid4(), True))
            continue
        if same_name["promoted_from"] != source_id and await store.other_children_in(
            conn, same_name["group_id"], source_id
        ):
            raise Conflict(
                f"the target year already has a group '{successor.name}' with other children",
                {"group_id": str(same_name["group_id"])},
            )
        found.append((same_name["group_id"], False))
    return found


async def _carry_out(
    conn: asyncpg.Connection,
    school_id: uuid.UUID,
    target_id: uuid.UUID,
    planned: list[Successor],
    plan: PromotionPlan,
) -> None:
    for successor, group in zip(planned, plan.groups, strict=True):
        if group.new and not await schools.insert_group(
            conn, group.group_id, school_id, target_id, group.name
        ):
            raise Conflict(f"the target year already has a group '{group.name}'")
        await store.mark_promoted(conn, group.group_id, successor.source.group_id)
        for teacher in group.teachers:
            await schools.assign_teaching(conn, group.group_id, teacher)
    placed = await store.place_children(conn, target_id, [(g.from_group_id, g.group_id) for g in plan.groups])
    for group in plan.groups:
        group.children_placed = placed[group.group_id]
    current = await conn.fetchval("SELECT current_year_id FROM schools WHERE school_id = $1", school_id)
    if current == target_id:
        # Promoted after the year began: guardians and teachers follow at once.
        await memberships.derive(conn, school_id)
