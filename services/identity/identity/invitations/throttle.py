"""Throttling access-code guessing (issue 5): per client address, per code prefix, per account.

Each attempt is counted, atomically, before the code is checked, so guesses sent at once cannot all
slip in under a limit; a right code takes its count back. Codes carry about 2^76 of entropy, so these
limits are about abuse and noise more than about the odds of a hit: a right, usable code is let in
over a limit too (its count taken back), so a parent behind the same NAT address as someone who
mistyped or abused is never blocked; only a wrong code is refused with 429.
"""

import uuid
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from identity.settings import Settings
from shared.app import settings_of
from shared.clients import client_address as shared_client_address
from shared.clients import client_key
from shared.errors import TooManyRequests


@dataclass(frozen=True)
class Limit:
    """At most ``attempts`` failed attempts per fixed window of ``window_seconds``."""

    attempts: int
    window_seconds: int


# A school's parents may share one address (the school's wifi at an information evening): generous.
PER_ADDRESS = Limit(attempts=30, window_seconds=15 * 60)
# One code's owner mistyping it a few times must not lock the code away for long.
PER_PREFIX = Limit(attempts=10, window_seconds=60 * 60)
PER_ACCOUNT = Limit(attempts=10, window_seconds=15 * 60)
# Windows older than this say nothing about guessing now.
KEPT_SECONDS = 86_400


def client_address(request: web.Request) -> str:
    """The client address attempts are counted on: the peer, or the address a trusted proxy names
    (shared.clients, TRUSTED_PROXIES); an IPv6 client counts as its /64 (shared.clients.client_key),
    which one client usually holds whole."""
    return client_key(shared_client_address(request, settings_of(request.app, Settings).trusted_proxies))


def keys(address: str, prefix: str | None, person_id: uuid.UUID | None) -> list[tuple[str, Limit]]:
    """The counters one attempt counts on: ``address``, the typed code's ``prefix`` (None when the
    text cannot be a code) and the logged-in account (None when anonymous)."""
    found = [(f"address:{address}", PER_ADDRESS)]
    if prefix is not None:
        found.append((f"prefix:{prefix}", PER_PREFIX))
    if person_id is not None:
        found.append((f"account:{person_id}", PER_ACCOUNT))
    return found


async def count_attempt(
    conn: asyncpg.Connection, counters: list[tuple[str, Limit]]
) -> TooManyRequests | None:
    """Count one attempt on every counter. Returns the refusal for a wrong code when any counter is
    over its limit, this attempt included (429, Retry-After in seconds until the longest-blocked
    window ends), else None: raise it only once the code is found not to be usable."""
    wait = 0
    for key, limit in counters:
        row = await conn.fetchrow(
            """INSERT INTO redeem_attempts (key, window_start, attempts)
               VALUES ($1, to_timestamp(floor(extract(epoch FROM now()) / $2) * $2), 1)
               ON CONFLICT (key, window_start) DO UPDATE SET attempts = redeem_attempts.attempts + 1
               RETURNING attempts,
                         ceil(extract(epoch FROM window_start + $2 * interval '1 second' - now()))::int AS left""",
            key,
            limit.window_seconds,
        )
        assert row is not None
        if row["attempts"] > limit.attempts:
            wait = max(wait, row["left"], 1)
    if not wait:
        return None
    return TooManyRequests(
        "too many attempts with access codes; wait a while and try again", retry_after=wait
    )


async def take_back(conn: asyncpg.Connection, counters: list[tuple[str, Limit]]) -> None:
    """A right code is no guess: its attempt no longer counts against the limits."""
    for key, limit in counters:
        await conn.execute(
            """UPDATE redeem_attempts SET attempts = greatest(attempts - 1, 0)
               WHERE key = $1 AND window_start = to_timestamp(floor(extract(epoch FROM now()) / $2) * $2)""",
            key,
            limit.window_seconds,
        )


async def forget_old_attempts(conn: asyncpg.Connection) -> None:
    """Delete counters of windows that started more than ``KEPT_SECONDS`` ago."""
    await conn.execute(
        "DELETE FROM redeem_attempts WHERE window_start < now() - $1 * interval '1 second'", KEPT_SECONDS
    )
