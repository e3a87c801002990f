"""Waiting for what a test server received: the one loop the push, FCM and APNs stand-ins share."""

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def wait_for_count(
    received: list[T],
    arrived: asyncio.Event,
    count: int,
    timeout: float,  # noqa: ASYNC109 - every test wants the same short wait, written once
    what: str,
    rejections: object,
) -> list[T]:
    """The first ``count`` items of ``received`` once that many are there, woken by ``arrived`` (which
    the server sets on each arrival). TimeoutError after ``timeout`` seconds, naming ``what`` was
    expected and the server's ``rejections`` (most often the reason)."""
    try:
        async with asyncio.timeout(timeout):
            while len(received) < count:
                arrived.clear()
                await arrived.wait()
    except TimeoutError:
        raise TimeoutError(
            f"expected {count} {what} within {timeout}s, got {len(received)}; rejections: {rejections}"
        ) from None
    return received[:count]
