"""HTTP handlers for children, their placements and their guardians. Each change re-derives the
memberships of the accounts it touches (identity.memberships) and invites new guardians once the
school has started inviting (identity.invitations)."""

import uuid
from datetime import date

import asyncpg
from aiohttp import web

from identity import memberships
from identity.access import require_admin, require_admin_of
from identity.families import store
from identity.families.changes import publish_child_changes
from identity.families.domain import (
    ChildQuery,
    ChildView,
    CreateChild,
    GuardianView,
    Leave,
    NewGuardian,
    Place,
    PlacementView,
    UpdateChild,
)
from identity.invitations.store import invite_pending_of_child
from shared.app import POOL
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json, read_query
from shared.pagination import Page, page_of
from shared.tokens import require_caller


async def _child_view(conn: asyncpg.Connection, child_id: uuid.UUID) -> ChildView:
    row = await store.child(conn, child_id)
    if row is None:
        raise NotFound("no such child")
    return ChildView.model_validate(dict(row))


async def _group_of_school(conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID) -> None:
    found = await conn.fetchval("SELECT school_id FROM groups WHERE group_id = $1", group_id)
    if found != school_id:
        raise ValidationFailed(
            "some fields are missing or invalid",
            [{"field": "group_id", "problem": "no such group at this school"}],
        )


async def create_child(request: web.Request) -> web.Response:
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    command = await read_json(request, CreateChild)
    child_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        if not await store.insert_child(conn, child_id, school_id, command.model_dump()):
            raise Conflict("the school already has a child with this external_id", {"field": "external_id"})
        if command.group_id is not None:
            await _group_of_school(conn, command.group_id, school_id)
            await store.place(conn, child_id, command.group_id)
        for guardian in command.guardians:
            await store.add_guardian(conn, child_id, school_id, guardian.email, guardian.display_name)
        await invite_pending_of_child(conn, child_id)
        await publish_child_changes(conn, [child_id])
        view = await _child_view(conn, child_id)
    return json_response(view, status=201)


async def list_children(request: web.Request) -> web.Response:
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, ChildQuery)
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
        rows = await store.children_page(conn, school_id, query.group_id, query.limit, query.after())
    items = [ChildView.model_validate(dict(r)) for r in rows]
    page: Page[ChildView] = page_of(
        items, query.limit, lambda c: [c.family_name.lower(), c.given_name.lower(), str(c.child_id)]
    )
    return json_response(page)


async def get_child(request: web.Request) -> web.Response:
    caller = require_caller(request)
    child_id = path_id(request, "child_id")
    async with request.app[POOL].acquire() as conn:
        await require_admin_of(conn, caller, "children", "child_id", child_id, "child")
        view = await _child_view(conn, child_id)
    return json_response(view)


async def update_child(request: web.Request) -> web.Response:
    caller = require_caller(request)
    child_id = path_id(request, "child_id")
    command = await read_json(request, UpdateChild)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin_of(conn, caller, "children", "child_id", child_id, "child")
        await store.update_child(conn, child_id, command.model_dump(exclude_unset=True))
        await publish_child_changes(conn, [child_id])
        view = await _child_view(conn, child_id)
    return json_response(view)


async def place_child(request: web.Request) -> web.Response:
    """Place the child in a group for that group's school year; mid-year, guardians follow at once."""
    caller = require_caller(request)
    child_id = path_id(request, "child_id")
    command = await read_json(request, Place)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(conn, caller, "children", "child_id", child_id, "child")
        await _group_of_school(conn, command.group_id, school_id)
        if await conn.fetchval("SELECT left_on IS NOT NULL FROM children WHERE child_id = $1", child_id):
            raise Conflict("this child has left the school")
        school_year_id = await store.place(conn, child_id, command.group_id)
        await memberships.derive(conn, school_id, await store.linked_guardians(conn, child_id))
        await invite_pending_of_child(conn, child_id)
    return json_response(
        PlacementView(child_id=child_id, group_id=command.group_id, school_year_id=school_year_id)
    )


async def leave_school(request: web.Request) -> web.Response:
    """The child leaves: their guardians lose the child's group at once (and the school, when they
    have no other child there)."""
    caller = require_caller(request)
    child_id = path_id(request, "child_id")
    command = await read_json(request, Leave)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(conn, caller, "children", "child_id", child_id, "child")
        # The school's local date, not the server's: near midnight they differ.
        today: date = await conn.fetchval(
            "SELECT (now() AT TIME ZONE time_zone)::date FROM schools WHERE school_id = $1", school_id
        )
        if command.left_on is not None and command.left_on > today:
            # Access ends when the leaving is recorded; a date ahead would promise an end that nothing keeps.
            raise ValidationFailed(
                "record a leaving on the day itself (or after it): access ends when it is recorded",
                [{"field": "left_on", "problem": "is in the future"}],
            )
        already: date | None = await conn.fetchval(
            "SELECT left_on FROM children WHERE child_id = $1", child_id
        )
        if already is None:
            await store.leave(conn, child_id, command.left_on or today)
        await conn.execute(
            """UPDATE access_codes SET revoked_at = now() WHERE used_at IS NULL AND revoked_at IS NULL
               AND guardianship_id IN (SELECT guardianship_id FROM guardianships WHERE child_id = $1)""",
            child_id,
        )
        await memberships.derive(conn, school_id, await store.linked_guardians(conn, child_id))
        view = await _child_view(conn, child_id)
    return json_response(view)


async def add_guardian(request: web.Request) -> web.Response:
    """Add a guardian by email. The answer looks the same whether the address has an account
    anywhere or not: the guardian gets an invitation and links themselves with its code."""
    caller = require_caller(request)
    child_id = path_id(request, "child_id")
    command = await read_json(request, NewGuardian)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(conn, caller, "children", "child_id", child_id, "child")
        guardianship_id = await store.add_guardian(
            conn, child_id, school_id, command.email, command.display_name
        )
        await invite_pending_of_child(conn, child_id)
        view = await _child_view(conn, child_id)
    guardian = next(g for g in view.guardians if g.guardianship_id == guardianship_id)
    return json_response(GuardianView.model_validate(guardian.model_dump()), status=201)


async def remove_guardian(request: web.Request) -> web.Response:
    caller = require_caller(request)
    guardianship_id = path_id(request, "guardianship_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(
            conn, caller, "guardianships", "guardianship_id", guardianship_id, "guardian"
        )
        person_id = await store.remove_guardian(conn, guardianship_id)
        if person_id is not None:
            await memberships.derive(conn, school_id, [person_id])
    return web.Response(status=204)
