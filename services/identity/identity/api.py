"""Identity's HTTP handlers."""

import hmac
import uuid

import asyncpg
from aiohttp import web

from identity import store
from identity.domain import (
    LOGIN_WINDOW_SECONDS,
    MAX_FAILURES_PER_ACCOUNT,
    MAX_FAILURES_PER_ADDRESS,
    AddPerson,
    CreateGroup,
    CreateSchool,
    GroupView,
    Login,
    MembershipView,
    NewPerson,
    PersonView,
    SchoolCreated,
    TokenView,
    membership_role,
)
from identity.passwords import DUMMY_HASH, check_password_policy, hash_password, verify_password
from identity.resources import SIGNER
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.contracts import GroupCreated, MembershipGranted, MembershipRevoked, PersonRegistered, Role
from shared.errors import Conflict, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.outbox import publish
from shared.tokens import Caller, require_caller


def _require_admin_of(request: web.Request, school_id: uuid.UUID) -> Caller:
    caller = require_caller(request, "admin")
    if caller.school_id != school_id:
        raise NotFound("no such school")
    return caller


async def _new_password_hash(person: NewPerson, field: str = "password") -> str:
    problem = check_password_policy(person.password, person.email)
    if problem:
        raise ValidationFailed("the password is not accepted", [{"field": field, "problem": problem}])
    return await hash_password(person.password)


async def _register(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    school_id: uuid.UUID,
    role: Role,
    person: NewPerson,
    password_hash: str,
) -> None:
    if not await store.insert_person(
        conn, person_id, school_id, role, person.email, person.display_name, person.locale, password_hash
    ):
        raise Conflict("someone with this email address already has an account", {"field": "email"})
    await publish(
        conn,
        PersonRegistered(
            person_id=person_id,
            school_id=school_id,
            role=role,
            display_name=person.display_name,
            email=person.email,
            locale=person.locale,
        ),
        school_id,
    )


async def create_school(request: web.Request) -> web.Response:
    """For the operator: a new school and its first admin."""
    settings = settings_of(request.app, Settings)
    key = settings.operator_api_key.get_secret_value() if settings.operator_api_key else None
    # Its own header: the Authorization header is for access tokens, checked by the auth middleware.
    given = request.headers.get("X-Operator-Key", "").encode()
    if key is None or not hmac.compare_digest(given, key.encode()):
        raise Unauthorized("this endpoint needs the operator key")
    command = await read_json(request, CreateSchool)
    password_hash = await _new_password_hash(command.admin, field="admin.password")
    school_id, admin_id = uuid.uuid4(), uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await store.insert_school(conn, school_id, command.name)
        await _register(conn, admin_id, school_id, "admin", command.admin, password_hash)
    return json_response(SchoolCreated(school_id=school_id, admin_id=admin_id), status=201)


async def add_person(request: web.Request) -> web.Response:
    school_id = path_id(request, "school_id")
    _require_admin_of(request, school_id)
    command = await read_json(request, AddPerson)
    password_hash = await _new_password_hash(command)
    person_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await _register(conn, person_id, school_id, command.role, command, password_hash)
        row = await store.person(conn, person_id)
    assert row is not None
    return json_response(PersonView.model_validate(dict(row)), status=201)


async def create_group(request: web.Request) -> web.Response:
    school_id = path_id(request, "school_id")
    _require_admin_of(request, school_id)
    command = await read_json(request, CreateGroup)
    group_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await store.insert_group(conn, group_id, school_id, command.name, command.school_year):
            raise Conflict(f"the school already has a group '{command.name}' in {command.school_year}")
        await publish(
            conn,
            GroupCreated(
                group_id=group_id, school_id=school_id, name=command.name, school_year=command.school_year
            ),
            school_id,
        )
    return json_response(
        GroupView(group_id=group_id, school_id=school_id, name=command.name, school_year=command.school_year),
        status=201,
    )


async def _group_and_person(
    request: web.Request, conn: asyncpg.Connection
) -> tuple[uuid.UUID, uuid.UUID, str, uuid.UUID]:
    group_id, person_id = path_id(request, "group_id"), path_id(request, "person_id")
    caller = require_caller(request, "admin")
    group = await store.group(conn, group_id)
    if group is None or group["school_id"] != caller.school_id:
        raise NotFound("no such group")
    person = await store.person(conn, person_id)
    if person is None or person["school_id"] != caller.school_id:
        raise NotFound("no such person")
    return group_id, person_id, person["role"], caller.school_id


async def grant_membership(request: web.Request) -> web.Response:
    """Link a teacher or guardian to a group (idempotent)."""
    async with request.app[POOL].acquire() as conn, conn.transaction():
        group_id, person_id, person_role, school_id = await _group_and_person(request, conn)
        role = membership_role(person_role)
        if role is None:
            raise ValidationFailed(
                "an admin cannot be a member of a group", [{"field": "person_id", "problem": "is an admin"}]
            )
        revision = await store.grant(conn, group_id, person_id, role)
        if revision is not None:
            event = MembershipGranted(group_id=group_id, person_id=person_id, role=role, revision=revision)
            await publish(conn, event, school_id)
    return json_response(MembershipView(group_id=group_id, person_id=person_id, role=role))


async def revoke_membership(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        group_id, person_id, _role, school_id = await _group_and_person(request, conn)
        ended = await store.revoke(conn, group_id, person_id)
        if ended is None:
            raise NotFound("this person is not linked to this group")
        event = MembershipRevoked(
            group_id=group_id, person_id=person_id, role=ended["role"], revision=ended["revision"]
        )
        await publish(conn, event, school_id)
    return web.Response(status=204)


async def login(request: web.Request) -> web.Response:
    command = await read_json(request, Login)
    keys = (f"email:{command.email.lower()}", f"ip:{request.remote}")
    pool = request.app[POOL]
    # Every attempt is counted before the password is checked, atomically, so guesses sent at once
    # cannot all slip in under the limit; a successful login takes its count back.
    async with pool.acquire() as conn, conn.transaction():
        account = await store.count_attempt(conn, keys[0], LOGIN_WINDOW_SECONDS)
        address = await store.count_attempt(conn, keys[1], LOGIN_WINDOW_SECONDS)
    if account > MAX_FAILURES_PER_ACCOUNT or address > MAX_FAILURES_PER_ADDRESS:
        raise TooManyRequests("too many failed attempts; try again in 15 minutes")
    async with pool.acquire() as conn:
        person = await store.person_for_login(conn, command.email)
    # Verify against a dummy hash for unknown addresses, so timing does not tell who has an account.
    ok, new_hash = await verify_password(
        person["password_hash"] if person and person["password_hash"] else DUMMY_HASH, command.password
    )
    if not ok or person is None:
        raise Unauthorized("the email address or password is wrong")
    async with pool.acquire() as conn, conn.transaction():
        for key in keys:
            await store.take_back_attempt(conn, key, LOGIN_WINDOW_SECONDS)
        if new_hash:
            await store.set_password_hash(conn, person["person_id"], new_hash)
    signer = request.app[SIGNER]
    token = signer.issue(
        Caller(person_id=person["person_id"], role=person["role"], school_id=person["school_id"])
    )
    return json_response(TokenView(access_token=token, expires_in=signer.ttl_seconds))


async def me(request: web.Request) -> web.Response:
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn:
        row = await store.person(conn, caller.person_id)
    if row is None:
        raise NotFound("no such person")
    return json_response(PersonView.model_validate(dict(row)))


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIGNER].jwks(), headers={"Cache-Control": "public, max-age=300"})
