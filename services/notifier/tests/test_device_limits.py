"""The device limits (device_limits.py, issue 8) as several replicas and restarts meet them: the
registrations of an hour are counted in PostgreSQL, once for all replicas, at the limit one of two
registrations at once passes, old counts are cleaned up; a device registered again counts as recent,
so the per-person cap drops a device nobody registers any more rather than the one in use."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from notifier import device_limits
from notifier.device_limits import RegistrationLimiter
from notifier.settings import Settings
from shared.app import POOL, settings_of
from shared.errors import TooManyRequests

from .test_delivery_outage import notifier_without_smtp

LIMIT = 5


@contextlib.asynccontextmanager
async def two_replicas() -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """The pools of two replicas of one notifier (one database)."""
    async with notifier_without_smtp(device_registrations_per_hour=LIMIT) as (app, _):
        other = await asyncpg.create_pool(settings_of(app, Settings).database_url, min_size=1, max_size=4)
        try:
            yield app[POOL], other
        finally:
            await other.close()


async def passes(limiter: RegistrationLimiter, pool: asyncpg.Pool, person_id: uuid.UUID) -> bool:
    async with pool.acquire() as conn:
        try:
            await limiter.check(conn, person_id)
        except TooManyRequests:
            return False
    return True


async def test_registrations_are_counted_once_for_all_replicas_and_survive_a_restart() -> None:
    # Counted in each process, N replicas gave a person N times the limit and a restart a fresh one.
    async with two_replicas() as (first, second):
        person = uuid.uuid4()
        replicas = [(RegistrationLimiter(LIMIT), first), (RegistrationLimiter(LIMIT), second)]
        assert [await passes(*replicas[i % 2], person) for i in range(LIMIT)] == [True] * LIMIT
        assert not await passes(*replicas[1], person)
        assert not await passes(*replicas[0], person)
        restarted = RegistrationLimiter(LIMIT)
        async with first.acquire() as conn:
            with pytest.raises(TooManyRequests) as refused:
                await restarted.check(conn, person)
        assert refused.value.retry_after is not None
        assert 3590 <= refused.value.retry_after <= 3600
        assert await passes(restarted, second, uuid.uuid4()), "another person is not held back"


async def test_two_registrations_at_once_at_the_limit_do_not_both_pass() -> None:
    async with two_replicas() as (first, second):
        limiter = RegistrationLimiter(LIMIT)
        for _ in range(10):
            person = uuid.uuid4()
            for _ in range(LIMIT - 1):
                assert await passes(limiter, first, person)
            both = await asyncio.gather(passes(limiter, first, person), passes(limiter, second, person))
            assert sorted(both) == [False, True]
        person = uuid.uuid4()
        many = await asyncio.gather(*(passes(limiter, (first, second)[i % 2], person) for i in range(12)))
        assert many.count(True) == LIMIT


async def test_registrations_older_than_an_hour_no_longer_count_and_are_deleted() -> None:
    async with two_replicas() as (pool, _):
        person, gone = uuid.uuid4(), uuid.uuid4()
        await pool.execute(
            """INSERT INTO device_registrations (person_id, registered_at)
               SELECT p, now() - interval '61 minutes' FROM unnest($1::uuid[]) p""",
            [person] * LIMIT + [gone] * 3,
        )
        limiter = RegistrationLimiter(LIMIT)
        assert await passes(limiter, pool, person)
        # Anyone's expired rows go as registrations pass, also of people who never come back.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM device_registrations WHERE registered_at <= now() - interval '1 hour'"
            )
            == 0
        )
        # Retry-After: until the oldest registration of the hour leaves it.
        await pool.execute(
            """INSERT INTO device_registrations (person_id, registered_at)
               SELECT $1, now() - interval '59 minutes' FROM generate_series(2, $2)""",
            person,
            LIMIT,
        )
        async with pool.acquire() as conn:
            with pytest.raises(TooManyRequests) as refused:
                await limiter.check(conn, person)
        assert refused.value.retry_after is not None
        assert 55 <= refused.value.retry_after <= 61


async def test_a_browser_registering_again_is_not_the_device_the_cap_drops() -> None:
    # The 21st device replaces the least recently registered one; a browser re-subscribing with the
    # same subscription (an app re-registering its token on every start) is the one in use, not it.
    async with two_replicas() as (pool, _):
        person = uuid.uuid4()

        async def browser(name: str) -> uuid.UUID:
            async with pool.acquire() as conn:
                row = await device_limits.register_webpush(
                    conn, person, f"https://fcm.googleapis.com/wp/{name}", f"p256dh-{name}", f"auth-{name}", 3
                )
            assert row is not None
            return uuid.UUID(str(row["device_id"]))

        a, b, c = [await browser(name) for name in "abc"]
        assert await browser("a") == a
        d = await browser("d")
        kept = {
            r["device_id"]
            for r in await pool.fetch("SELECT device_id FROM devices WHERE person_id = $1", person)
        }
        assert kept == {a, c, d}, f"dropped { ({a, b, c, d} - kept) } of a, b, c, d"


async def test_an_app_registering_its_token_again_is_not_the_device_the_cap_drops() -> None:
    async with two_replicas() as (pool, _):
        person = uuid.uuid4()

        async def app(token: str, kind: str = "fcm") -> uuid.UUID:
            async with pool.acquire() as conn:
                row = await device_limits.register_native(conn, person, kind, token, 3)
            return uuid.UUID(str(row["device_id"]))

        first, _, third = [await app(f"fcm-token-{i}-" * 4) for i in range(3)]
        assert await app("fcm-token-0-" * 4) == first
        fourth = await app("ab" * 32, "apns")
        kept = {
            r["device_id"]
            for r in await pool.fetch("SELECT device_id FROM devices WHERE person_id = $1", person)
        }
        assert kept == {first, third, fourth}
