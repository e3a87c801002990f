"""The service's PostgreSQL connection pool."""

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb columns in and out as Python objects.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _release_as_is(_conn: asyncpg.Connection) -> None:
    """What a released connection needs beyond asyncpg's own cleanup: nothing. asyncpg still rolls back
    a transaction left open and drops listeners; its default reset query (advisory unlock, CLOSE ALL,
    UNLISTEN *, RESET ALL) would cost a second round trip per request (9 % of the feed's time under
    load, bench/RESULTS.md) for state this code never leaves on a pooled connection: advisory locks are
    transaction-level (the migrations' session lock is released in its own finally), cursors live in
    transactions, LISTEN runs on the Drainer's own connection, and no SET outlives its transaction."""


async def create_pool(dsn: str, size: int = 10, **kwargs: Any) -> asyncpg.Pool:
    kwargs.setdefault("reset", _release_as_is)
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=size, init=_init_connection, command_timeout=30, **kwargs
    )
    assert pool is not None
    return pool
