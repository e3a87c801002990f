"""A background loop that drains a table of pending work: woken at once by LISTEN/NOTIFY, with a
periodic sweep that catches what a lost notification (or a failed attempt) left behind.

The outbox relay, photo processing and notification delivery all have this shape; each gives a
``drain()`` that handles one batch and returns how many rows it handled.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)


class Drainer:
    def __init__(
        self,
        name: str,
        dsn: str,
        channel: str,
        drain: Callable[[], Awaitable[int]],
        sweep_seconds: float,
        on_payload: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._dsn = dsn
        self._channel = channel
        self._drain = drain
        self._sweep_seconds = sweep_seconds
        # Told each notification that carries a payload (news other than "work is due": no drain).
        self._on_payload = on_payload
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name=f"{self.name}-listen"),
            asyncio.create_task(self._run(), name=f"{self.name}-run"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._sweep_seconds)
            self._wake.clear()
            try:
                while await self._drain() > 0:
                    pass
                backoff = 0.1
            except Exception:
                log.exception("drain failed", extra={"drainer": self.name})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._sweep_seconds)
                self._wake.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload and self._on_payload is not None:
            self._on_payload(payload)
        else:
            self._wake.set()

    async def _listen(self) -> None:
        """Keep one connection LISTENing; reconnect when it drops (the sweep covers the gap)."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                self.listening = True
                self._wake.set()
                await lost.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("listen connection failed", extra={"drainer": self.name, "error": str(exc)})
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=2)
            await asyncio.sleep(1)
