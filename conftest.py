"""Fixtures every test can use: the whole system, started once per test session."""

from collections.abc import AsyncIterator

import pytest

from tests.harness.system import System, start_system, stop_system


@pytest.fixture(scope="session")
async def system() -> AsyncIterator[System]:
    running = await start_system()
    yield running
    await stop_system(running)
