"""Logging in, and setting a password from a reset or welcome link."""

from aiohttp import web

from identity.accounts.store import set_password_hash
from identity.login import store
from identity.login.domain import Login, SetPassword, TokenView
from identity.login.resets import token_hash, use_reset
from identity.passwords import DUMMY_HASH, check_password_policy, hash_password, verify_password
from identity.resources import SIGNER
from shared.app import POOL
from shared.errors import TooManyRequests, Unauthorized, ValidationFailed
from shared.http import json_response, read_json
from shared.tokens import Caller

LOGIN_WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_ACCOUNT = 10
MAX_FAILURES_PER_ADDRESS = 50


def _token(request: web.Request, caller: Caller) -> web.Response:
    signer = request.app[SIGNER]
    return json_response(TokenView(access_token=signer.issue(caller), expires_in=signer.ttl_seconds))


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
        person = await store.account_for_login(conn, command.email)
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
            await set_password_hash(conn, person["person_id"], new_hash)
    return _token(request, Caller(person_id=person["person_id"]))


async def set_password(request: web.Request) -> web.Response:
    """Set the password with a single-use token from a reset or welcome email; logs in."""
    command = await read_json(request, SetPassword)
    async with request.app[POOL].acquire() as conn:
        email = await conn.fetchval(
            """SELECT a.email FROM password_resets r JOIN accounts a USING (person_id)
               WHERE r.token_hash = $1""",
            token_hash(command.token),
        )
    problem = check_password_policy(command.password, email)
    if problem:
        raise ValidationFailed("the password is not accepted", [{"field": "password", "problem": problem}])
    password_hash = await hash_password(command.password)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        person_id = await use_reset(conn, command.token)
        if person_id is None:
            raise Unauthorized("this link is not valid (any more); ask for a new one")
        await set_password_hash(conn, person_id, password_hash)
    return _token(request, Caller(person_id=person_id))


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIGNER].jwks(), headers={"Cache-Control": "public, max-age=300"})
