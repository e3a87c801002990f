"""The caller's own account."""

from aiohttp import web

from identity.accounts import store
from identity.accounts.domain import ChildOfMine, Me, SchoolRoles, TaughtGroup, UpdateMe
from shared.app import POOL
from shared.errors import NotFound
from shared.http import json_response, read_json
from shared.tokens import require_caller


async def me(request: web.Request) -> web.Response:
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn:
        row = await store.account(conn, caller.person_id)
        if row is None:
            raise NotFound("no such account")
        view = Me(
            person_id=row["person_id"],
            email=row["email"],
            display_name=row["display_name"],
            locale=row["locale"],
            staff=[SchoolRoles(**dict(r)) for r in await store.staff_roles(conn, caller.person_id)],
            children=[ChildOfMine(**dict(r)) for r in await store.children_of(conn, caller.person_id)],
            teaches=[TaughtGroup(**dict(r)) for r in await store.taught_groups(conn, caller.person_id)],
        )
    return json_response(view)


async def update_me(request: web.Request) -> web.Response:
    caller = require_caller(request)
    command = await read_json(request, UpdateMe)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        updated = await conn.fetchval(
            """UPDATE accounts SET display_name = coalesce($2, display_name), locale = coalesce($3, locale)
               WHERE person_id = $1 RETURNING true""",
            caller.person_id,
            command.display_name,
            command.locale,
        )
        if not updated:
            raise NotFound("no such account")
        await store.publish_account(conn, caller.person_id)
    return await me(request)
