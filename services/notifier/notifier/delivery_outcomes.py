"""Recording sends as sent, several at once: a group commit.

A fan-out finishes many sends within a few milliseconds of each other. Each stored alone costs a
pool connection, a round trip and a commit (a WAL flush) apiece, and those queue behind each other on
a busy machine. Here a send that succeeded waits for the next flush: whatever arrived while the
previous flush ran is stored in one statement (store.mark_many_sent), and every waiter learns the
outcome of that flush. Nothing is added to the latency of a lone send (a flush starts at once when
none runs), and the guarantee stays as it was: a send's slot is given back only after its row is
stored as sent, so a crash can repeat at most the sends in flight.
"""

import asyncio
import uuid

import asyncpg

from notifier import store

# What a flush may hold: keeps one statement's array (and its lock set) small.
MAX_BATCH = 500


class SentRecorder:
    """``await recorder.sent(table, id)`` returns once the row (table "deliveries" or "mails") is
    stored as sent; raises what storing raised (the database was unreachable: the row's lease runs
    out and it is claimed afresh, as when a single update failed)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting: list[tuple[str, uuid.UUID, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def sent(self, table: str, row_id: uuid.UUID) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((table, row_id, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush(), name="notifier-sent-recorder")
        # Shielded: a caller cancelled meanwhile (a stop) does not cancel what others wait for.
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            deliveries = [row_id for table, row_id, _ in batch if table == "deliveries"]
            mails = [row_id for table, row_id, _ in batch if table == "mails"]
            try:
                async with self._pool.acquire() as conn:
                    await store.mark_many_sent(conn, deliveries, mails)
            except BaseException as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    raise
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)
