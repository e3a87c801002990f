"""Redeeming an access code (seed rule 2), and an admin's re-send and revoke."""

from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from identity import memberships
from identity.access import require_admin, require_admin_of
from identity.accounts.store import account_by_email, ensure_account
from identity.invitations import codes, launches, store, throttle
from identity.invitations.domain import InvitationSent, LaunchView, Redeem, Redeemed
from identity.login import refresh
from identity.login.api import keep_device, remember_client
from identity.passwords import check_password_policy, hash_password
from identity.resources import SIGNER
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.tokens import CALLER, Caller, require_caller

INVALID = "this access code is not valid; check it against the email (16 letters and digits)"
USED = "this access code has been used already; log in instead"
REPLACED = "this access code was replaced by a newer one; use the code from the latest email"
WITHDRAWN = "this access code was withdrawn by the school; ask the school for a new one"
NO_LONGER = "this access code no longer gives access; ask the school if you think it should"
EXPIRED = "this access code has expired; ask the school for a new one"


def _refuse(reason: str) -> ValidationFailed:
    return ValidationFailed(reason, [{"field": "code", "problem": reason}])


async def _refusal(conn: asyncpg.Connection, found: asyncpg.Record | None) -> str | None:
    """Why the code cannot be redeemed, one clear reason (None when it can). Nothing here says more
    about a code than its holder knows from the email already."""
    if found is None:
        return INVALID
    if found["used_at"] is not None or found["linked_person_id"] is not None:
        return USED
    if found["left_on"] is not None:
        return NO_LONGER
    if found["revoked_at"] is not None:
        replaced = await store.has_newer_code(conn, found["code_id"], found["guardianship_id"])
        return REPLACED if replaced else WITHDRAWN
    if found["expires_at"] <= datetime.now(UTC):
        return EXPIRED
    return None


async def redeem(request: web.Request) -> web.Response:
    """Link a guardian to that one child: a new account, or the logged-in one (seed rule 2).

    Every attempt is counted per client address, code prefix and account before the code is checked;
    over a limit a wrong or unusable code gets 429 with Retry-After, while a right, usable code still
    gets in (codes are far too long to guess; the limits are against abuse, and must not block a
    parent behind the same NAT address). A right code takes its count back, and the client is known
    to the account from then on, as after a login (identity.login.throttle). The code is never logged:
    it travels in the body, and the request log holds the path only.
    """
    command = await read_json(request, Redeem)
    caller: Caller | None = request.get(CALLER)
    canonical = codes.canonical(command.code)
    counters = throttle.keys(
        throttle.client_address(request),
        canonical[: codes.PREFIX_LENGTH] if canonical else None,
        caller.person_id if caller else None,
    )
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        over_limit = await throttle.count_attempt(conn, counters)
    if canonical is None:
        raise over_limit or _refuse(INVALID)
    if over_limit is not None:
        # Only a usable code gets past a limit; looked up before any password is hashed.
        async with pool.acquire() as conn:
            if await _refusal(conn, await store.find_code(conn, canonical)) is not None:
                raise over_limit
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
    async with pool.acquire() as conn, conn.transaction():
        found = await store.find_code(conn, canonical)
        refusal = await _refusal(conn, found)
        if refusal is not None:
            raise over_limit or _refuse(refusal)
        assert found is not None
        if caller is not None:
            # A code links the account of the address it was mailed to, never whoever holds it:
            # otherwise anyone logged in could take a code forwarded or seen over a shoulder.
            own = await conn.fetchval("SELECT email FROM accounts WHERE person_id = $1", caller.person_id)
            if own is None or own.lower() != found["email"].lower():
                raise _refuse(
                    "this access code was sent to another email address: log in with the account of "
                    "that address, or use the code without logging in to make that account"
                )
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
        await throttle.take_back(conn, counters)
        device_token = await remember_client(conn, request, found["email"])
        # A new account is logged in at once, as after a login: access and refresh token.
        issued = (
            await refresh.start_family(
                conn, person_id, refresh.Lifetime.from_settings(settings_of(request.app, Settings))
            )
            if created
            else None
        )
    signer = request.app[SIGNER]
    response = json_response(
        Redeemed(
            person_id=person_id,
            child_id=found["child_id"],
            school_id=found["school_id"],
            access_token=signer.issue(Caller(person_id=person_id)) if issued else None,
            expires_in=signer.ttl_seconds if issued else None,
            refresh_token=issued.token if issued else None,
        ),
        status=201,
    )
    keep_device(response, device_token, settings_of(request.app, Settings))
    return response


async def resend(request: web.Request) -> web.Response:
    """A new code for a guardian who has not linked yet; the old one stops working."""
    caller = require_caller(request)
    guardianship_id = path_id(request, "guardianship_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await require_admin_of(conn, caller, "guardianships", "guardianship_id", guardianship_id, "guardian")
        if await store.issue(conn, guardianship_id) is None:
            raise Conflict("this guardian is linked already (or the child has left): nothing to invite")
    return json_response(InvitationSent(guardianship_id=guardianship_id), status=201)


async def revoke(request: web.Request) -> web.Response:
    """Withdraw the guardian's open code (it stops working; no reminders follow); 404 if none."""
    caller = require_caller(request)
    guardianship_id = path_id(request, "guardianship_id")
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
    """Start the school's launch day (or answer the one running): every guardian of a placed child
    who has no account linked and no open code is invited, each once, in the background; from then
    on new guardians are invited as they are added (seed: one launch day). 202 with the launch to
    follow at its Location."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        await require_admin(conn, caller, school_id)
        row = await launches.start(conn, school_id)
    launches.work_off_soon(request.app, pool, row["launch_id"])
    return json_response(
        LaunchView.model_validate(dict(row)),
        status=202,
        headers={"Location": f"/invitation-launches/{row['launch_id']}"},
    )


async def get_launch(request: web.Request) -> web.Response:
    """How far a launch has come: follow it until ``status`` is ``done``."""
    caller = require_caller(request)
    launch_id = path_id(request, "launch_id")
    async with request.app[POOL].acquire() as conn:
        await require_admin_of(conn, caller, "invitation_launches", "launch_id", launch_id, "launch")
        row = await launches.launch(conn, launch_id)
    return json_response(LaunchView.model_validate(dict(row)))  # type: ignore[arg-type]
