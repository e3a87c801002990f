"""Redeeming an access code (seed rule 2), and an admin's re-send and revoke."""

from datetime import UTC, datetime

from aiohttp import web

from identity import memberships
from identity.access import require_admin, require_admin_of
from identity.accounts.store import account_by_email, ensure_account
from identity.invitations import codes, store
from identity.invitations.domain import InvitationSent, InvitationsLaunched, Redeem, Redeemed
from identity.passwords import check_password_policy, hash_password
from identity.resources import SIGNER
from shared.app import POOL
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.tokens import CALLER, Caller, require_caller

REFUSED = "this access code is not valid"


def _refuse(reason: str) -> ValidationFailed:
    return ValidationFailed(reason, [{"field": "code", "problem": reason}])


async def redeem(request: web.Request) -> web.Response:
    """Link a guardian to that one child: a new account, or the logged-in one."""
    command = await read_json(request, Redeem)
    caller: Caller | None = request.get(CALLER)
    if codes.canonical(command.code) is None:
        raise _refuse(REFUSED)
    password_hash = None
    if caller is None:
        missing = [f for f in ("display_name", "password") if getattr(command, f) is None]
        if missing:
            raise ValidationFailed(
                "to make your account, give your name and a password",
                [{"field": f, "problem": "is needed to make an account"} for f in missing],
            )
        assert command.password is not None
        problem = check_password_policy(command.password)
        if problem:
            raise ValidationFailed(
                "the password is not accepted", [{"field": "password", "problem": problem}]
            )
        password_hash = await hash_password(command.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        found = await store.find_code(conn, command.code)
        if found is None:
            raise _refuse(REFUSED)
        if found["used_at"] is not None or found["linked_person_id"] is not None:
            raise _refuse("this access code has been used already; log in instead")
        if found["revoked_at"] is not None:
            raise _refuse("this access code was replaced by a newer one; use the code from the latest email")
        if found["left_on"] is not None:
            raise _refuse(REFUSED)
        if found["expires_at"] <= datetime.now(UTC):
            raise _refuse("this access code has expired; ask the school for a new one")
        if caller is not None:
            person_id, created = caller.person_id, False
        else:
            if await account_by_email(conn, found["email"]) is not None:
                raise Conflict(
                    "there is already an account for this email address: log in, then enter the code",
                    {"field": "code"},
                )
            assert command.display_name is not None
            person_id, created = await ensure_account(
                conn, found["email"], command.display_name, command.locale or "nl", password_hash
            )
        await store.use_code(conn, found["code_id"], found["guardianship_id"], person_id)
        await memberships.derive(conn, found["school_id"], [person_id])
    token = request.app[SIGNER].issue(Caller(person_id=person_id)) if created else None
    return json_response(
        Redeemed(
            person_id=person_id,
            child_id=found["child_id"],
            school_id=found["school_id"],
            access_token=token,
            expires_in=request.app[SIGNER].ttl_seconds if token else None,
        ),
        status=201,
    )


async def resend(request: web.Request) -> web.Response:
    """A new code for a guardian who has not linked yet; the old one stops working."""
    guardianship_id = path_id(request, "guardianship_id")
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin_of(conn, caller, "guardianships", "guardianship_id", guardianship_id, "guardian")
        if await store.issue(conn, guardianship_id) is None:
            raise Conflict("this guardian is linked already (or the child has left): nothing to invite")
    return json_response(InvitationSent(guardianship_id=guardianship_id), status=201)


async def revoke(request: web.Request) -> web.Response:
    guardianship_id = path_id(request, "guardianship_id")
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin_of(conn, caller, "guardianships", "guardianship_id", guardianship_id, "guardian")
        revoked = await conn.fetchval(
            """UPDATE access_codes SET revoked_at = now()
               WHERE guardianship_id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING true""",
            guardianship_id,
        )
    if not revoked:
        raise NotFound("this guardian has no open invitation")
    return web.Response(status=204)


async def launch(request: web.Request) -> web.Response:
    """Invite every guardian of the school's placed children who has no account linked and no open
    code, each once, and from now on invite new ones as they are added (seed: one launch day)."""
    school_id = path_id(request, "school_id")
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        await conn.execute(
            "UPDATE schools SET invitations_launched_at = coalesce(invitations_launched_at, now()) WHERE school_id = $1",
            school_id,
        )
        children = await conn.fetch(
            "SELECT child_id FROM children WHERE school_id = $1 AND left_on IS NULL", school_id
        )
        invited = 0
        for row in children:
            invited += await store.invite_pending_of_child(conn, row["child_id"])
    return json_response(InvitationsLaunched(school_id=school_id, invited=invited))
