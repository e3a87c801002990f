"""A fresh database with the shared tables and the test tables, for shared/'s own tests."""

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.db import create_pool
from shared.migrations import migrate
from shared.testing.infra import create_database, drop_database


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    dsn = await create_database("shared")
    pool = await create_pool(dsn, 5)
    async with pool.acquire() as conn:
        await migrate(conn, Path(__file__).parent / "migrations")
    yield dsn, pool
    await pool.close()
    await drop_database(dsn)
