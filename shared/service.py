"""Start a service as a process: ``python -m posts`` and friends end up here."""

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

import uvloop
from aiohttp import web

from shared.app import ServiceSpec, create_app
from shared.logs import setup_logging
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)


async def serve(spec: ServiceSpec, settings: ServiceSettings) -> None:
    """Serve until SIGTERM or SIGINT. Unlike ``web.run_app``, what was opened before a failed start-up
    (an HTTP session, a pool) is closed too, so a service that cannot start says only why."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(spec, settings), access_log=None, shutdown_timeout=10)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        # What start-up made (modules, settings, the app, pools) lives as long as the process: out of
        # the collector's reach (gc.freeze), a full collection no longer walks it. Walking it paused
        # a service for 20-40 ms at random moments (a full collection of the imports alone: ~40 ms),
        # the tail of a class's fan-out. Garbage is collected first, so none is frozen.
        gc.collect()
        gc.freeze()
        log.info("listening", extra={"host": settings.http_host, "port": settings.http_port})
        await stop.wait()
    finally:
        await runner.cleanup()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop every service runs on: uvloop's (libuv), a drop-in asyncio loop whose socket
    reads and writes, callbacks and timers cost far less CPU than the standard library's selector
    loop. A service's CPU goes mostly to them: the notifier's sends, 1.9 ms of CPU a delivery in a
    school-wide post, spent a quarter of it in the selector transport's write alone (bench/fanout.py
    --profile). The aiohttp, asyncpg and aio-pika authors test on it; writing our own loop is no
    option, and tuning the standard one cannot remove its per-call Python overhead."""
    return uvloop.new_event_loop


def run(spec: ServiceSpec, settings: ServiceSettings) -> None:
    setup_logging(spec.name, settings.log_level, settings.log_json)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(spec, settings))
