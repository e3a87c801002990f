"""HTTP handlers for schools, their settings, school years, groups, staff and teaching."""

import hmac
import uuid

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from identity import memberships
from identity.access import require_admin, require_admin_of
from identity.accounts.store import ensure_account
from identity.login.resets import issue_reset
from identity.passwords import check_password_policy, hash_password
from identity.schools import store
from identity.schools.domain import (
    AddStaff,
    CreateGroup,
    CreateSchool,
    CreateSchoolYear,
    GroupQuery,
    GroupView,
    Paging,
    RenameGroup,
    SchoolCreated,
    SchoolSettings,
    SchoolView,
    SchoolYearView,
    StaffRole,
    StaffView,
    TeachingView,
)
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from shared.http import json_response, path_id, read_json, read_query
from shared.pagination import Page, page_of
from shared.tokens import require_caller


def _require_operator(request: web.Request) -> None:
    settings = settings_of(request.app, Settings)
    key = settings.operator_api_key.get_secret_value() if settings.operator_api_key else None
    # Its own header: the Authorization header is for access tokens, checked by the auth middleware.
    given = request.headers.get("X-Operator-Key", "").encode()
    if key is None or not hmac.compare_digest(given, key.encode()):
        raise Unauthorized("this endpoint needs the operator key")


async def create_school(request: web.Request) -> web.Response:
    """For the operator: a new school and its first admin. An admin whose address already has an
    account gets the admin role on it (their password stays theirs); a new one without a password
    gets a welcome mail to set one."""
    _require_operator(request)
    command = await read_json(request, CreateSchool)
    admin = command.admin
    password_hash = None
    if admin.password is not None:
        problem = check_password_policy(admin.password, admin.email)
        if problem:
            raise ValidationFailed(
                "the password is not accepted", [{"field": "admin.password", "problem": problem}]
            )
        password_hash = await hash_password(admin.password)
    school_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await store.insert_school(conn, school_id, command.name, command.time_zone, command.locale)
        admin_id, created = await ensure_account(
            conn, admin.email, admin.display_name, admin.locale, password_hash
        )
        await store.add_staff_role(conn, school_id, admin_id, "admin", admin.display_name)
        await store.publish_staff(conn, school_id, admin_id)
        if created and password_hash is None:
            await issue_reset(conn, admin_id, "welcome", command.name)
    return json_response(SchoolCreated(school_id=school_id, admin_id=admin_id), status=201)


async def _school_view(request: web.Request, school_id: uuid.UUID) -> SchoolView:
    async with request.app[POOL].acquire() as conn:
        row = await store.school(conn, school_id)
    if row is None:
        raise NotFound("no such school")
    return SchoolView.model_validate(dict(row))


async def get_school(request: web.Request) -> web.Response:
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
    return json_response(await _school_view(request, school_id))


async def update_school(request: web.Request) -> web.Response:
    """Change the school's name, time zone or settings; the other services learn of it by event."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    command = await read_json(request, SchoolSettings)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        await store.update_school(conn, school_id, command.model_dump(exclude_none=True))
        if command.time_zone is not None:
            # Another zone can mean another local date, and so another current year.
            await store.refresh_current_year(conn, school_id)
    return json_response(await _school_view(request, school_id))


async def create_school_year(request: web.Request) -> web.Response:
    """A school year with its dates; it becomes current when it holds today's local date."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    command = await read_json(request, CreateSchoolYear)
    starts, ends = command.dates()
    school_year_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        problem = await store.insert_school_year(conn, school_year_id, school_id, command.name, starts, ends)
        if problem == "name":
            raise Conflict(f"the school already has school year {command.name}", {"field": "name"})
        if problem == "overlap":
            raise Conflict("these dates overlap another school year of the school", {"field": "starts_on"})
        await store.refresh_current_year(conn, school_id)
        rows = await store.school_years(conn, school_id)
    view = next(SchoolYearView.model_validate(dict(r)) for r in rows if r["school_year_id"] == school_year_id)
    return json_response(view, status=201)


class SchoolYearList(BaseModel):
    items: list[SchoolYearView]


async def list_school_years(request: web.Request) -> web.Response:
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
        rows = await store.school_years(conn, school_id)
    return json_response(SchoolYearList(items=[SchoolYearView.model_validate(dict(r)) for r in rows]))


async def create_group(request: web.Request) -> web.Response:
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    command = await read_json(request, CreateGroup)
    group_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        year = await store.school_year_by_name(conn, school_id, command.school_year)
        if year is None:
            raise ValidationFailed(
                "some fields are missing or invalid",
                [
                    {
                        "field": "school_year",
                        "problem": f"the school has no school year {command.school_year} yet",
                    }
                ],
            )
        if not await store.insert_group(conn, group_id, school_id, year["school_year_id"], command.name):
            raise Conflict(f"the school already has a group '{command.name}' in {command.school_year}")
        row = await store.group(conn, group_id)
    return json_response(GroupView.model_validate(dict(row)), status=201)  # type: ignore[arg-type]


class GroupList(BaseModel):
    items: list[GroupView]


async def list_groups(request: web.Request) -> web.Response:
    """The groups of one school year (default: the current one), by name."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, GroupQuery)
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
        if query.school_year is not None:
            year = await store.school_year_by_name(conn, school_id, query.school_year)
        else:
            year = await conn.fetchrow(
                "SELECT current_year_id AS school_year_id FROM schools WHERE school_id = $1", school_id
            )
        rows = (
            await store.groups_of_year(conn, year["school_year_id"])
            if year and year["school_year_id"]
            else []
        )
    return json_response(GroupList(items=[GroupView.model_validate(dict(r)) for r in rows]))


async def get_group(request: web.Request) -> web.Response:
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    async with request.app[POOL].acquire() as conn:
        await require_admin_of(conn, caller, "groups", "group_id", group_id, "group")
        row = await store.group(conn, group_id)
    return json_response(GroupView.model_validate(dict(row)))  # type: ignore[arg-type]


async def rename_group(request: web.Request) -> web.Response:
    caller = require_caller(request)
    group_id = path_id(request, "group_id")
    command = await read_json(request, RenameGroup)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin_of(conn, caller, "groups", "group_id", group_id, "group")
        if not await store.rename_group(conn, group_id, command.name):
            raise Conflict(f"that school year already has a group '{command.name}'", {"field": "name"})
        row = await store.group(conn, group_id)
    return json_response(GroupView.model_validate(dict(row)))  # type: ignore[arg-type]


async def add_staff(request: web.Request) -> web.Response:
    """Give an account a staff role at the school, making the account when the address has none.

    The answer is the same whether the address already had an account (anywhere) or not, so one
    school learns nothing about another's people; a new account gets a welcome mail to set its
    password.
    """
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    command = await read_json(request, AddStaff)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        person_id, _created = await ensure_account(conn, command.email, command.display_name, command.locale)
        await store.add_staff_role(conn, school_id, person_id, command.role, command.display_name)
        await store.publish_staff(conn, school_id, person_id)
        account = await conn.fetchrow(
            "SELECT password_hash IS NULL AS new FROM accounts WHERE person_id = $1", person_id
        )
        if account and account["new"]:
            school = await store.school(conn, school_id)
            await issue_reset(conn, person_id, "welcome", school["name"] if school else None)
        await memberships.derive(conn, school_id, [person_id])
        row = await store.staff_member(conn, school_id, person_id)
    assert row is not None
    return json_response(StaffView.model_validate(dict(row)), status=201)


async def list_staff(request: web.Request) -> web.Response:
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, Paging)
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
        rows = await store.staff_page(conn, school_id, query.limit, query.after())
    items = [StaffView.model_validate(dict(r)) for r in rows]
    page: Page[StaffView] = page_of(items, query.limit, lambda s: [s.display_name.lower(), str(s.person_id)])
    return json_response(page)


class RoleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: StaffRole = Field(description="The role to take away.")


async def remove_staff(request: web.Request) -> web.Response:
    """Take a staff role away; a teacher stops teaching the school's groups. The last admin stays."""
    caller = require_caller(request)
    school_id, person_id = path_id(request, "school_id"), path_id(request, "person_id")
    query = read_query(request, RoleQuery)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        # Staff changes of one school are serialised on its row: two admins taking each other's role
        # at the same moment must not both see "one admin left besides me".
        await store.lock_school(conn, school_id)
        if query.role == "admin" and await store.admins_left(conn, school_id) <= 1:
            raise Conflict("a school keeps at least one admin")
        if not await store.remove_staff_role(conn, school_id, person_id, query.role):
            raise NotFound("no such staff member")
        if query.role == "teacher":
            # No longer a teacher here: no group of the school is theirs to teach, now or later.
            await store.end_all_teaching(conn, school_id, person_id)
        await store.publish_staff(conn, school_id, person_id)
        await memberships.derive(conn, school_id, [person_id])
    return web.Response(status=204)


async def assign_teacher(request: web.Request) -> web.Response:
    """The teacher teaches the group (idempotent); in the current year they join it at once."""
    caller = require_caller(request)
    group_id, person_id = path_id(request, "group_id"), path_id(request, "person_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(conn, caller, "groups", "group_id", group_id, "group")
        if not await store.is_teacher(conn, school_id, person_id):
            raise NotFound("no such teacher at this school")
        await store.assign_teaching(conn, group_id, person_id)
        await memberships.derive(conn, school_id, [person_id])
    return json_response(TeachingView(group_id=group_id, person_id=person_id))


async def end_teacher(request: web.Request) -> web.Response:
    caller = require_caller(request)
    group_id, person_id = path_id(request, "group_id"), path_id(request, "person_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        school_id = await require_admin_of(conn, caller, "groups", "group_id", group_id, "group")
        if not await store.end_teaching(conn, group_id, person_id):
            raise NotFound("this teacher does not teach this group")
        await memberships.derive(conn, school_id, [person_id])
    return web.Response(status=204)
