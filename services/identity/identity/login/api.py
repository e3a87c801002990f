"""Logging in and out, refreshing tokens, and setting a password from a reset or welcome link."""

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from identity.accounts.store import account, set_password_hash
from identity.login import refresh, store, throttle
from identity.login.domain import Login, Refresh, RequestReset, ResetRequested, SetPassword, TokenView
from identity.login.resets import issue_reset, token_hash, use_reset
from identity.login.throttle import Limit, LoginRules
from identity.passwords import DUMMY_HASH, check_password_policy, hash_password, verify_password
from identity.resources import SIGNER
from identity.settings import Settings
from shared.app import POOL, settings_of
from shared.clients import client_address, client_key
from shared.errors import Unauthorized, ValidationFailed
from shared.http import json_response, read_json
from shared.tokens import Caller

# Names the device across logins (see identity.login.throttle): HttpOnly, so scripts cannot read it.
DEVICE_COOKIE = "klaspost_device"
RESET_WINDOW_SECONDS = 3_600
SET_PASSWORD_WINDOW_SECONDS = 900
# A reset request is answered no sooner than this after it arrived, whether a mail is made or not,
# so the answer's timing does not tell whether the address has an account.
RESET_ANSWER_SECONDS = 0.25


def _client(request: web.Request) -> str:
    """The client that limits count on: its IP address, an IPv6 address as its /64 (client_key)."""
    return client_key(client_address(request, settings_of(request.app, Settings).trusted_proxies))


async def remember_client(conn: asyncpg.Connection, request: web.Request, email: str) -> str:
    """The request's client proved it holds the account of ``email``: remember its device and IP
    address (identity.login.throttle.remember_client). Returns the device cookie for `keep_device`."""
    return await throttle.remember_client(conn, email, _client(request), request.cookies.get(DEVICE_COOKIE))


async def email_of(conn: asyncpg.Connection, person_id: uuid.UUID) -> str:
    """The login address of an account that exists."""
    found = await account(conn, person_id)
    assert found is not None
    return str(found["email"])


def keep_device(response: web.StreamResponse, device_token: str, settings: Settings) -> None:
    """Set the device cookie, for as long as a device stays known."""
    response.set_cookie(
        DEVICE_COOKIE,
        device_token,
        max_age=settings.known_client_days * 86_400,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def _tokens(request: web.Request, issued: refresh.Issued) -> TokenView:
    """An access token for the account, with the refresh token just issued."""
    signer = request.app[SIGNER]
    return TokenView(
        access_token=signer.issue(Caller(person_id=issued.person_id)),
        expires_in=signer.ttl_seconds,
        refresh_token=issued.token,
        refresh_expires_in=int((issued.expires_at - datetime.now(UTC)).total_seconds()),
    )


async def login(request: web.Request) -> web.Response:
    """Log in with email and password: 401 when either is wrong (the same answer for an unknown
    address), 429 with Retry-After when attempts are throttled; past the soft limit per address an
    unknown client's answer comes a few seconds later instead (identity.login.throttle)."""
    command = await read_json(request, Login)
    settings = settings_of(request.app, Settings)
    pool = request.app[POOL]
    device_token = request.cookies.get(DEVICE_COOKIE)
    rules = LoginRules.from_settings(settings)
    async with pool.acquire() as conn, conn.transaction():
        attempt = await throttle.admit_login(
            conn, rules, command.email.lower(), _client(request), device_token
        )
    # A delayed check waits its turn holding no database connection.
    async with throttle.DELAYED_CHECKS.turn(rules.address, attempt):
        async with pool.acquire() as conn:
            person = await store.account_for_login(conn, command.email)
        # Verify against a dummy hash for unknown addresses, so timing does not tell who has an account.
        ok, new_hash = await verify_password(
            person["password_hash"] if person and person["password_hash"] else DUMMY_HASH, command.password
        )
    if not ok or person is None:
        raise Unauthorized("the email address or password is wrong")
    async with pool.acquire() as conn, conn.transaction():
        device_token = await throttle.login_succeeded(conn, attempt, device_token)
        if new_hash:
            await set_password_hash(conn, person["person_id"], new_hash)
        issued = await refresh.start_family(
            conn, person["person_id"], refresh.Lifetime.from_settings(settings)
        )
    response = json_response(_tokens(request, issued))
    keep_device(response, device_token, settings)
    return response


async def refresh_tokens(request: web.Request) -> web.Response:
    """Trade a refresh token for a new access token and the next refresh token; 401 for a token that
    is unknown, expired, revoked or used before (which revokes its whole family)."""
    command = await read_json(request, Refresh)
    lifetime = refresh.Lifetime.from_settings(settings_of(request.app, Settings))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        issued = await refresh.rotate(conn, command.refresh_token, lifetime)
    # Raised after the commit: a reused token's family must stay revoked.
    if issued is None:
        raise Unauthorized("this refresh token is not valid (any more); log in again")
    return json_response(_tokens(request, issued))


async def logout(request: web.Request) -> web.Response:
    """End the login the refresh token belongs to: it and every token refreshed from it stop working.
    Always 204, also for a token that was ended before."""
    command = await read_json(request, Refresh)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await refresh.revoke_family_of(conn, command.refresh_token)
    return web.Response(status=204)


async def request_reset(request: web.Request) -> web.Response:
    """Mail a link to set the password, if the address has an account: 202 with the same answer
    either way; 429 with Retry-After past the limits per address and per client."""
    started = asyncio.get_running_loop().time()
    command = await read_json(request, RequestReset)
    settings = settings_of(request.app, Settings)
    email = command.email.lower()
    limits = [
        (f"reset-address:{email}", Limit(settings.reset_limit_per_address, RESET_WINDOW_SECONDS)),
        (f"reset-ip:{_client(request)}", Limit(settings.reset_limit_per_client, RESET_WINDOW_SECONDS)),
    ]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await throttle.admit(conn, limits)
        person_id = await store.account_for_reset(conn, email)
        if person_id is not None:
            await issue_reset(conn, person_id, "reset")
    elapsed = asyncio.get_running_loop().time() - started
    await asyncio.sleep(max(0.0, RESET_ANSWER_SECONDS - elapsed))
    return json_response(ResetRequested(), status=202)


async def set_password(request: web.Request) -> web.Response:
    """Set the password with a single-use token from a reset or welcome email; logs in (the client is
    known to the account from then on, as after a login), and ends every other login of the
    account. 401 for a token that is unknown, used or expired; 429 past the
    limit of attempts per client."""
    command = await read_json(request, SetPassword)
    settings = settings_of(request.app, Settings)
    key = f"set-password-ip:{_client(request)}"
    async with request.app[POOL].acquire() as conn, conn.transaction():
        attempt = await throttle.admit(
            conn, [(key, Limit(settings.set_password_limit_per_client, SET_PASSWORD_WINDOW_SECONDS))]
        )
    async with request.app[POOL].acquire() as conn:
        email = await store.email_of_reset(conn, token_hash(command.token))
    # An unknown link is told so before the password is judged (a used or expired one at its use).
    if email is None:
        raise Unauthorized("this link is not valid (any more); ask for a new one")
    problem = check_password_policy(command.password, email)
    if problem:
        raise ValidationFailed("the password is not accepted", [{"field": "password", "problem": problem}])
    password_hash = await hash_password(command.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        person_id = await use_reset(conn, command.token)
        if person_id is None:
            raise Unauthorized("this link is not valid (any more); ask for a new one")
        await store.take_back(conn, attempt)
        await set_password_hash(conn, person_id, password_hash)
        await refresh.revoke_all(conn, person_id)
        issued = await refresh.start_family(conn, person_id, refresh.Lifetime.from_settings(settings))
        device_token = await remember_client(conn, request, await email_of(conn, person_id))
    response = json_response(_tokens(request, issued))
    keep_device(response, device_token, settings)
    return response


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIGNER].jwks(), headers={"Cache-Control": "public, max-age=300"})
