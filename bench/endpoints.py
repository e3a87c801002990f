"""Where a bench's notifications go, each in a process of its own, as a relay and a push service are:
an SMTP relay stand-in and the local Web Push service. Each counts what arrived into a value shared
with the bench, with the time (``time.perf_counter``, the same clock in every process of this
machine) the last one arrived, so the bench reads an arrival time without polling the receiver.

The relay stand-in speaks the SMTP a relay speaks to a client (greeting, EHLO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT) and takes every message without parsing it: a relay queues MIME, it does not parse
it (shared.testing.smtp.SmtpSink, which parses each mail with the email package on aiosmtpd, stays
the strict sink of the tests). The push service is shared.testing.pushservice.PushService with
``decrypt=False``: it checks each push as a push service does (VAPID token, TTL, Topic, encoding,
size) and does not decrypt it, which only the browser can.
"""

import asyncio
import multiprocessing
import time
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

from shared.testing.pushservice import PushService, ReceivedPush

_CONTEXT = multiprocessing.get_context("spawn")


class Arrivals:
    """How many arrived, and the perf_counter of the last arrival, shared between processes."""

    def __init__(self) -> None:
        self._count: Synchronized[int] = _CONTEXT.Value("q", 0, lock=False)
        self._last: Synchronized[float] = _CONTEXT.Value("d", 0.0, lock=False)

    def arrived(self) -> None:
        # One writer (the receiver's one thread): no lock needed; the count is written last.
        self._last.value = time.perf_counter()
        self._count.value += 1

    @property
    def count(self) -> int:
        return self._count.value

    @property
    def last(self) -> float:
        return self._last.value

    async def until(self, count: int, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """The perf_counter of the arrival that made the count reach ``count`` (polled every 2 ms)."""
        deadline = time.perf_counter() + timeout
        while self._count.value < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self._count.value} of {count} arrived within {timeout} s")
            await asyncio.sleep(0.002)
        return self._last.value


class _Relay(asyncio.Protocol):
    """One client's SMTP session; commands may come pipelined, a message's data ends at CRLF.CRLF."""

    def __init__(self, arrivals: Arrivals, keep: "Synchronized[int]", kept: Any) -> None:
        self._arrivals = arrivals
        self._keep = keep
        self._kept = kept
        self._buffer = b""
        self._in_data = False
        self._recipients: list[str] = []
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 localhost ESMTP bench relay\r\n")

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        replies: list[bytes] = []
        while True:
            if self._in_data:
                if self._buffer.startswith(b".\r\n"):
                    message, self._buffer = b"", self._buffer[3:]
                else:
                    end = self._buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    message, self._buffer = self._buffer[: end + 2], self._buffer[end + 5 :]
                self._in_data = False
                if self._keep.value:
                    self._kept.put((self._recipients, message))
                self._recipients = []
                self._arrivals.arrived()
                replies.append(b"250 2.0.0 queued\r\n")
                continue
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                break
            line, self._buffer = self._buffer[:line_end], self._buffer[line_end + 2 :]
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                replies.append(b"250-localhost\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n")
            elif verb == b"RCPT":
                self._recipients.append(line.partition(b":")[2].strip(b" <>").decode())
                replies.append(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA":
                self._in_data = True
                replies.append(b"354 end data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self._transport.write(b"".join([*replies, b"221 2.0.0 bye\r\n"]))
                self._transport.close()
                return
            else:  # MAIL, RSET, NOOP
                if verb in (b"MAIL", b"RSET"):
                    self._recipients = []
                replies.append(b"250 2.0.0 OK\r\n")
        if replies:
            self._transport.write(b"".join(replies))


def _run_relay(
    port: "Synchronized[int]", arrivals: Arrivals, keep: "Synchronized[int]", kept: Any, stop: Event
) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Relay(arrivals, keep, kept), "127.0.0.1", 0)
        port.value = server.sockets[0].getsockname()[1]
        await asyncio.to_thread(stop.wait)
        server.close()

    asyncio.run(serve())


class RelayProcess:
    """The SMTP relay stand-in in a process of its own. ``keep()``: each message's (recipients, raw
    bytes) is also put on ``kept`` (the bench reads its set-up mails there) until ``keep(False)``."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.arrivals = Arrivals()
        self.kept: multiprocessing.Queue[tuple[list[str], bytes]] = _CONTEXT.Queue()
        self._keep: Synchronized[int] = _CONTEXT.Value("i", 0)
        self._port: Synchronized[int] = _CONTEXT.Value("i", 0)
        self._stop = _CONTEXT.Event()
        self._process = _CONTEXT.Process(
            target=_run_relay,
            args=(self._port, self.arrivals, self._keep, self.kept, self._stop),
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()
        _until_started(self._port, self._process, "the SMTP relay")

    @property
    def port(self) -> int:
        return self._port.value

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def keep(self, keep: bool = True) -> None:
        self._keep.value = int(keep)

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)


class _CountedPushes(list[ReceivedPush]):
    def __init__(self, arrivals: Arrivals) -> None:
        super().__init__()
        self._arrivals = arrivals

    def append(self, push: ReceivedPush) -> None:
        super().append(push)
        self._arrivals.arrived()


def _run_push(port: "Synchronized[int]", arrivals: Arrivals, control: Connection, decrypt: bool) -> None:
    async def serve() -> None:
        service = PushService(decrypt=decrypt)
        service.messages = _CountedPushes(arrivals)
        await service.start()
        port.value = int(service.base_url.rsplit(":", 1)[1])
        while True:
            request = await asyncio.to_thread(control.recv)
            if request is None:
                break
            key, count = request
            control.send([service.subscribe(key) for _ in range(count)])
        await service.stop()

    asyncio.run(serve())


class PushProcess:
    """shared.testing's PushService in a process of its own. ``subscribe(key, n)``: n browser
    subscriptions for the VAPID public key, as PushManager.subscribe() gives them to the page."""

    def __init__(self, *, decrypt: bool = False) -> None:
        self.arrivals = Arrivals()
        self._port: Synchronized[int] = _CONTEXT.Value("i", 0)
        self._control, child = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(
            target=_run_push, args=(self._port, self.arrivals, child, decrypt), daemon=True
        )

    def start(self) -> None:
        self._process.start()
        _until_started(self._port, self._process, "the push service")

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def subscribe(self, application_server_key: str, count: int = 1) -> list[dict[str, Any]]:
        self._control.send((application_server_key, count))
        subscriptions: list[dict[str, Any]] = self._control.recv()
        return subscriptions

    def stop(self) -> None:
        self._control.send(None)
        self._process.join(10)


def _until_started(port: "Synchronized[int]", process: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not port.value:
        if time.monotonic() > deadline or not process.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.01)
