"""Throttling of password guessing that a stranger cannot turn against an account's owner.

A fixed lock per address (10 failures, 15 minutes) let anyone lock anyone out, and a lock per IP
address locked out a whole school behind one NAT address, or everyone behind a reverse proxy. So,
as OWASP's Authentication Cheat Sheet and NIST SP 800-63B §5.2.2 advise, limits bind the guesser:

- per *pair* (address + client): a few failures are free, then each attempt waits a delay that
  doubles per failure, up to a cap. The client is the device, when its cookie logged in to the
  address before, else the IP address (an IPv6 address as its /64, shared.clients.client_key); so
  the owner's device is a pair of its own that a stranger, even behind the same NAT address, cannot
  slow down.
- per *client IP* over all addresses: high enough for a school's NAT; known clients are exempt.
- per *address* over all clients: past a soft limit an unknown client is never refused (a refusal
  there would be a slot that strangers keep taking, locking the owner out of every new device), but
  its answer comes only after a delay, with a bounded number of such checks per address at a time
  (the rest wait in line), so guesses spread over many clients still cost time and cannot tie up
  the server. Clients that logged in to the address before are exempt.

Attempts are counted before the password is checked, under advisory locks on their keys, so guesses
sent at once are counted one after the other; a successful login takes its count back. A refusal is a
429 whose Retry-After says when the attempt would be let through.
"""

import asyncio
import hashlib
import math
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from identity.login import store
from identity.login.store import Recent
from identity.settings import Settings
from shared.errors import TooManyRequests

# Past the soft limit per address, an unknown client's answer comes this much later, and at most
# this many such answers per address are on their way at once. Both bound how fast guesses spread
# over many clients are checked (ADDRESS_CONCURRENT_CHECKS / ADDRESS_DELAY_SECONDS per second),
# while the owner on a new device waits a few seconds, never a refusal.
ADDRESS_DELAY_SECONDS = 2.0
ADDRESS_CONCURRENT_CHECKS = 64

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
class SoftLimit:
    """Past ``limit`` failures in ``window`` seconds, an unknown client's answer waits ``delay``
    seconds, with at most ``concurrent`` such delayed checks per address at a time."""

    limit: int
    window: float
    delay: float
    concurrent: int

    def exceeded(self, recent: Recent) -> bool:
        """Whether the failures counted in the window (``recent``) reached the soft limit."""
        return recent.count >= self.limit


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
    address: SoftLimit
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
            address=SoftLimit(
                settings.login_address_soft_limit,
                settings.login_address_window_seconds,
                ADDRESS_DELAY_SECONDS,
                ADDRESS_CONCURRENT_CHECKS,
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
    delayed: bool


def device_client(device_token: str | None) -> str | None:
    """The client name of a device cookie ("device:<sha-256>"); None for no or a malformed cookie."""
    if device_token is None or not _DEVICE_TOKEN.fullmatch(device_token):
        return None
    return "device:" + hashlib.sha256(device_token.encode()).hexdigest()


async def admit_login(
    conn: asyncpg.Connection, rules: LoginRules, email: str, ip: str, device_token: str | None
) -> LoginAttempt:
    """Count a login attempt for ``email`` (lower-cased) from client ``ip`` (its IP address as
    shared.clients.client_key: an IPv6 client as its /64) with the request's device cookie, or
    refuse it: TooManyRequests (429) with ``retry_after`` in whole seconds. An attempt past the soft
    limit per address is let through ``delayed`` (check it in its `DelayedChecks.turn`).

    Call in a transaction, and check the password only after it committed.
    """
    device = device_client(device_token)
    ip_client = f"ip:{ip}"
    known = await store.known_clients(
        conn, email, [c for c in (device, ip_client) if c is not None], rules.known_days
    )
    pair_client = device if device is not None and device in known else ip_client
    pair_key, address_key = f"pair:{email} {pair_client}", f"address:{email}"
    keys = (pair_key, address_key, ip_client)
    now = await store.lock_keys(conn, keys)
    waits = [rules.pair.wait(await store.recent(conn, pair_key, now, rules.pair.window, 1), now)]
    delayed = False
    if not known:
        client = await store.recent(conn, ip_client, now, rules.client.window, rules.client.limit)
        waits.append(rules.client.wait(client, now))
        delayed = rules.address.exceeded(await store.recent(conn, address_key, now, rules.address.window, 1))
    refuse_if_waiting(max(waits))
    ids = await store.count_attempt(conn, keys, now)
    return LoginAttempt(email=email, ip=ip, device=device, pair_key=pair_key, ids=ids, delayed=delayed)


class DelayedChecks:
    """The line of delayed checks per address (in this process): `turn` lets at most
    ``concurrent`` through at once per address, each after ``delay`` seconds; the rest wait, first
    come first served, and are never refused. Its length is bounded by the pair and per-IP limits,
    which admitted every attempt in it."""

    def __init__(self) -> None:
        self._lines: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def turn(self, rule: SoftLimit, attempt: LoginAttempt) -> AsyncIterator[None]:
        """Wait for the attempt's turn (at once for an attempt that is not ``delayed``)."""
        if not attempt.delayed:
            yield
            return
        semaphore, waiting = self._lines.get(attempt.email) or (asyncio.Semaphore(rule.concurrent), 0)
        self._lines[attempt.email] = (semaphore, waiting + 1)
        try:
            async with semaphore:
                await asyncio.sleep(rule.delay)
                yield
        finally:
            semaphore, waiting = self._lines[attempt.email]
            if waiting == 1:
                del self._lines[attempt.email]
            else:
                self._lines[attempt.email] = (semaphore, waiting - 1)


DELAYED_CHECKS = DelayedChecks()


async def login_succeeded(conn: asyncpg.Connection, attempt: LoginAttempt, device_token: str | None) -> str:
    """The password was right: the attempt was no failure, the pair's failures are forgiven, and the
    client is known to the address from now on (`remember_client`). Returns the device cookie."""
    await store.take_back(conn, attempt.ids, [attempt.pair_key])
    return await remember_client(conn, attempt.email, attempt.ip, device_token)


async def remember_client(conn: asyncpg.Connection, email: str, ip: str, device_token: str | None) -> str:
    """The client proved it holds the account of ``email`` (a login, a redeemed access code, a reset
    or welcome link): its device and client ``ip`` (as shared.clients.client_key) are known to the
    address from now on, and not held back by strangers' failures. Returns the device cookie to set:
    the request's, or a new one when it had none or a malformed one."""
    if device_client(device_token) is None:
        device_token = secrets.token_urlsafe(32)
    device = device_client(device_token)
    assert device is not None
    await store.remember_clients(conn, email.lower(), [device, f"ip:{ip}"])
    return str(device_token)


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
