"""The app factory every service is built with: database and migrations, the broker, the outbox
relay, the consumer, token verification, error shape, correlation ids, health and OpenAPI."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import asyncpg
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.typedefs import Middleware

from shared import bus
from shared.consumer import Consumer, Handlers
from shared.db import create_pool
from shared.drain import Drainer
from shared.housekeeping import trim_outbox_and_inbox
from shared.http import Route, add_routes, openapi_document
from shared.jobs import PeriodicJob
from shared.middleware import correlation_middleware, error_middleware
from shared.migrations import migrate
from shared.outbox import NOTIFY_CHANNEL, OutboxRelay, outbox_backlog
from shared.settings import ServiceSettings
from shared.tokens import TokenVerifier, auth_middleware

log = logging.getLogger(__name__)

Context = Callable[[web.Application], AsyncIterator[None]]


@dataclass(frozen=True)
class ServiceSpec:
    """What makes one service: its name, HTTP routes, event handlers, migrations and own resources."""

    name: str
    routes: list[Route]
    handlers: Handlers
    migrations: Path
    # Service resources (object storage, mailer, workers), opened after the shared ones, closed before.
    contexts: list[Context] = field(default_factory=list)
    # How to verify access tokens; by default from JWKS_URL or JWKS_JSON (identity uses its own keys).
    verifier: Callable[[web.Application], TokenVerifier] | None = None
    version: str = "0.1.0"
    # Lines of the service's own figures for /metrics (Prometheus text), after the shared ones.
    metrics: Callable[[web.Application], Awaitable[list[str]]] | None = None


SETTINGS = web.AppKey("settings", ServiceSettings)
POOL = web.AppKey("pool", asyncpg.Pool)
HTTP = web.AppKey("http", aiohttp.ClientSession)
PUBLISHER = web.AppKey("publisher", AbstractRobustConnection)
CONSUMER = web.AppKey("consumer", Consumer)
SPEC = web.AppKey("spec", ServiceSpec)
AUTH = web.AppKey("auth", Middleware)


S = TypeVar("S", bound=ServiceSettings)


def settings_of(app: web.Application, kind: type[S]) -> S:
    """The app's settings as the service's own Settings class."""
    settings = app[SETTINGS]
    assert isinstance(settings, kind)
    return settings


def create_app(spec: ServiceSpec, settings: ServiceSettings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[correlation_middleware, error_middleware, _auth_middleware],
    )
    app[SETTINGS] = settings
    app[SPEC] = spec
    app.cleanup_ctx.extend([_http_client, _database, _broker, *spec.contexts, _auth])
    add_routes(app, spec.routes)
    document = openapi_document(f"Klaspost {spec.name}", spec.version, spec.routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", _openapi(document))
    return app


def _openapi(document: dict[str, object]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    return openapi


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    app[HTTP] = session
    yield
    await session.close()


async def _auth(app: web.Application) -> AsyncIterator[None]:
    spec = app[SPEC]
    verifier = spec.verifier(app) if spec.verifier else TokenVerifier.from_settings(app[SETTINGS], app[HTTP])
    app[AUTH] = auth_middleware(verifier)
    yield


@web.middleware
async def _auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    return await request.app[AUTH](request, handler)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(settings.database_url, settings.db_pool_size)
    async with pool.acquire() as conn:
        await migrate(conn, app[SPEC].migrations)
    app[POOL] = pool
    yield
    await pool.close()


async def _broker(app: web.Application) -> AsyncIterator[None]:
    settings, spec = app[SETTINGS], app[SPEC]
    publisher = await bus.connect(settings.amqp_url, f"{spec.name}-publisher")
    channel = await bus.publisher_channel(publisher)
    exchange = await bus.declare_exchange(channel, settings.exchange)
    relay = OutboxRelay(app[POOL], exchange, settings.outbox_batch, settings.publish_timeout_seconds)
    drainer = Drainer(
        f"{spec.name}-outbox",
        settings.database_url,
        NOTIFY_CHANNEL,
        relay.drain,
        settings.outbox_sweep_seconds,
    )
    app[PUBLISHER] = publisher
    consumer_connection: AbstractRobustConnection | None = None
    if spec.handlers.by_type:
        consumer_connection = await bus.connect(settings.amqp_url, f"{spec.name}-consumer")
        consumer = Consumer(
            spec.name,
            app[POOL],
            spec.handlers,
            settings.exchange,
            settings.retry_delays_ms,
            settings.prefetch,
            settings.publish_timeout_seconds,
        )
        await consumer.start(consumer_connection)
        app[CONSUMER] = consumer
    housekeeping = PeriodicJob(
        app[POOL],
        f"{spec.name}-housekeeping",
        settings.housekeeping_every_seconds,
        lambda conn: trim_outbox_and_inbox(
            conn, settings.outbox_retention_days, settings.inbox_retention_days
        ),
    )
    await drainer.start()
    await housekeeping.start()
    yield
    await housekeeping.stop()
    await drainer.stop()
    if consumer_connection is not None:
        await consumer_connection.close()
    await publisher.close()


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, bool] = {}
    try:
        async with app[POOL].acquire(timeout=2) as conn:
            checks["database"] = await conn.fetchval("SELECT true")
    except (OSError, asyncpg.PostgresError, TimeoutError):
        checks["database"] = False
    checks["broker"] = not app[PUBLISHER].is_closed
    if CONSUMER in app:
        try:
            checks["consumer"] = await asyncio.wait_for(app[CONSUMER].attached(), 2)
        except Exception:
            checks["consumer"] = False
    ready = all(checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: the outbox backlog is the figure that tells an operator events are stuck."""
    async with request.app[POOL].acquire() as conn:
        backlog = await outbox_backlog(conn)
    service = request.app[SPEC].name
    lines = [
        "# TYPE klaspost_outbox_unsent gauge",
        f'klaspost_outbox_unsent{{service="{service}"}} {backlog["unsent"]}',
        "# TYPE klaspost_outbox_oldest_seconds gauge",
        f'klaspost_outbox_oldest_seconds{{service="{service}"}} {backlog["oldest_seconds"]}',
    ]
    if CONSUMER in request.app:
        lines.append("# TYPE klaspost_events_total counter")
        for outcome, count in sorted(request.app[CONSUMER].outcomes.items()):
            lines.append(f'klaspost_events_total{{service="{service}",outcome="{outcome}"}} {count}')
    spec = request.app[SPEC]
    if spec.metrics is not None:
        lines.extend(await spec.metrics(request.app))
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
