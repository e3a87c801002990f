"""Throttling of password guessing that a stranger cannot turn against an account's owner.

A fixed lock per address (10 failures, 15 minutes) let anyone lock anyone out, and a lock per IP
address locked out a whole school behind one NAT address, or everyone behind a reverse proxy. So,
as OWASP's Authentication Cheat Sheet and NIST SP 800-63B §5.2.2 advise, limits bind the guesser:

- per *pair* (address + client): a few failures are free, then each attempt waits a delay that
  doubles per failure, up to a cap. The client is the device, when its cookie logged in to the
  address before, else the IP address; so the owner's device is a pair of its own that a stranger,
  even behind the same NAT address, cannot slow down.
- per *address* over all clients: a much higher soft limit past which attempts are spaced out, not
  refused for long; clients that logged in to the address before are exempt.
- per *client IP* over all addresses: high enough for a school's NAT; known clients are exempt.

Attempts are counted before the password is checked, under advisory locks on their keys, so guesses
sent at once are counted one after the other; a successful login takes its count back. A refusal is a
429 whose Retry-After says when the attempt would be let through.
"""

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from identity.login import store
from identity.login.store import Recent
from identity.settings import Settings
from shared.errors import TooManyRequests

# The device cookie is 32 random bytes, URL-safe base64, that identity made at a successful login.
_DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class Backoff:
    """``free`` failures in ``window`` seconds, then a delay after the newest one of ``first_delay``
    seconds, doubling per further failure, at most ``max_delay``."""

    free: int
    first_delay: float
    max_delay: float
    window: float

    def wait(self, recent: Recent, now: datetime) -> float:
        if recent.count < self.free or recent.newest is None:
            return 0.0
        # Capped exponent: 2 ** a few thousand would overflow a float long after max_delay is reached.
        delay = min(self.first_delay * 2.0 ** min(recent.count - self.free, 64), self.max_delay)
        return _until(recent.newest + timedelta(seconds=delay), now)


@dataclass(frozen=True)
class Spacing:
    """Past ``limit`` failures in ``window`` seconds, one attempt per ``spacing`` seconds."""

    limit: int
    window: float
    spacing: float

    def wait(self, recent: Recent, now: datetime) -> float:
        if recent.count < self.limit or recent.newest is None:
            return 0.0
        return _until(recent.newest + timedelta(seconds=self.spacing), now)


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` attempts in any ``window`` seconds (a sliding window)."""

    limit: int
    window: float

    def wait(self, recent: Recent, now: datetime) -> float:
        if recent.count < self.limit or recent.nth_newest is None:
            return 0.0
        # Once the limit-th newest attempt leaves the window, fewer than `limit` remain in it.
        return _until(recent.nth_newest + timedelta(seconds=self.window), now)


@dataclass(frozen=True)
class LoginRules:
    pair: Backoff
    address: Spacing
    client: Limit
    known_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "LoginRules":
        return cls(
            pair=Backoff(
                settings.login_free_failures,
                settings.login_first_delay_seconds,
                settings.login_max_delay_seconds,
                settings.login_pair_window_seconds,
            ),
            address=Spacing(
                settings.login_address_soft_limit,
                settings.login_address_window_seconds,
                settings.login_address_spacing_seconds,
            ),
            client=Limit(settings.login_client_limit, settings.login_client_window_seconds),
            known_days=settings.known_client_days,
        )

    @property
    def longest_window(self) -> float:
        return max(self.pair.window, self.address.window, self.client.window)


@dataclass(frozen=True)
class LoginAttempt:
    """An attempt let through to the password check, and what to do when the password is right."""

    email: str
    ip: str
    device: str | None
    pair_key: str
    ids: list[int]


def device_client(device_token: str | None) -> str | None:
    """The client name of a device cookie ("device:<sha-256>"); None for no or a malformed cookie."""
    if device_token is None or not _DEVICE_TOKEN.fullmatch(device_token):
        return None
    return "device:" + hashlib.sha256(device_token.encode()).hexdigest()


async def admit_login(
    conn: asyncpg.Connection, rules: LoginRules, email: str, ip: str, device_token: str | None
) -> LoginAttempt:
    """Count a login attempt for ``email`` (lower-cased) from client IP ``ip`` with the request's
    device cookie, or refuse it: TooManyRequests (429) with ``retry_after`` in whole seconds.

    Call in a transaction, and check the password only after it committed.
    """
    device = device_client(device_token)
    ip_client = f"ip:{ip}"
    known = await store.known_clients(
        conn, email, [c for c in (device, ip_client) if c is not None], rules.known_days
    )
    pair_client = device if device is not None and device in known else ip_client
    pair_key, address_key, client_key = f"pair:{email} {pair_client}", f"address:{email}", f"ip:{ip}"
    now = await store.lock_keys(conn, (pair_key, address_key, client_key))
    waits = [rules.pair.wait(await store.recent(conn, pair_key, now, rules.pair.window, 1), now)]
    if not known:
        address = await store.recent(conn, address_key, now, rules.address.window, 1)
        client = await store.recent(conn, client_key, now, rules.client.window, rules.client.limit)
        waits += [rules.address.wait(address, now), rules.client.wait(client, now)]
    refuse_if_waiting(max(waits))
    ids = await store.count_attempt(conn, (pair_key, address_key, client_key), now)
    return LoginAttempt(email=email, ip=ip, device=device, pair_key=pair_key, ids=ids)


async def login_succeeded(conn: asyncpg.Connection, attempt: LoginAttempt, device: str) -> None:
    """The password was right: the attempt was no failure, the pair's failures are forgiven, and the
    device (client name from `device_client`) and IP address are known to the address from now on."""
    await store.take_back(conn, attempt.ids, [attempt.pair_key])
    await store.remember_clients(conn, attempt.email, [device, f"ip:{attempt.ip}"])


async def admit(conn: asyncpg.Connection, limits: Sequence[tuple[str, Limit]]) -> list[int]:
    """Count one attempt under each key within its limit, or refuse it (TooManyRequests with
    ``retry_after``). Returns the attempt's row ids for `store.take_back`. Call in a transaction."""
    now = await store.lock_keys(conn, [key for key, _ in limits])
    waits = [
        limit.wait(await store.recent(conn, key, now, limit.window, limit.limit), now)
        for key, limit in limits
    ]
    refuse_if_waiting(max(waits, default=0.0))
    return await store.count_attempt(conn, [key for key, _ in limits], now)


def refuse_if_waiting(wait: float) -> None:
    """TooManyRequests with Retry-After in whole seconds (at least 1) when ``wait`` is positive."""
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(f"too many attempts; try again in {seconds} seconds", retry_after=seconds)


def _until(moment: datetime, now: datetime) -> float:
    return max(0.0, (moment - now).total_seconds())
