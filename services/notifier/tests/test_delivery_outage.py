"""An SMTP server that is down: the notifier says so. Each failed attempt is a warning naming the
channel, the reason, the attempt and the delivery; /metrics shows the backlog by channel and state,
how long the oldest pending delivery has waited, and how many attempts were retried or given up."""

import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web

from notifier.app import spec
from notifier.settings import Settings
from shared.app import POOL, create_app
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
from tests.harness.fanout import post_to_parents

from .conftest import eventually

PARENTS = 20


@contextlib.asynccontextmanager
async def notifier_without_smtp(**settings: object) -> AsyncIterator[tuple[web.Application, str]]:
    """A notifier whose SMTP server does not answer (nothing listens on its port); the app and its
    base URL."""
    async with contextlib.AsyncExitStack() as stack:
        amqp_url = await create_vhost()
        stack.push_async_callback(delete_vhost, amqp_url)
        database_url = await create_database("notifier_outage")
        stack.push_async_callback(drop_database, database_url)
        port = free_port()
        config = Settings.model_validate(
            {
                "http_port": port,
                "database_url": database_url,
                "amqp_url": amqp_url,
                "jwks_url": f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
                "smtp_host": "127.0.0.1",
                "smtp_port": free_port(),
                "smtp_timeout_seconds": 2,
                "outbox_sweep_seconds": 0.5,
                **settings,
            }
        )
        runner = web.AppRunner(create_app(spec(), config), access_log=None)
        stack.push_async_callback(runner.cleanup)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield runner.app, f"http://127.0.0.1:{port}"


async def attempted(pool: asyncpg.Pool, attempts: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) = $1 FROM deliveries WHERE attempts >= $2 AND last_error IS NOT NULL",
            PARENTS,
            attempts,
        )
    )


async def metrics(base_url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        name: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for name, value in [line.rsplit(" ", 1)]
    }


async def test_with_smtp_down_each_failed_attempt_is_logged_and_the_backlog_shows_in_metrics(caplog):
    caplog.set_level(logging.WARNING, logger="notifier.delivery")
    async with notifier_without_smtp() as (app, base_url):
        await post_to_parents(app[POOL], PARENTS)
        await eventually(lambda: attempted(app[POOL], 1), what="a first attempt at every delivery")
        delivery_ids = {
            str(r["delivery_id"]) for r in await app[POOL].fetch("SELECT delivery_id FROM deliveries")
        }
        figures = await metrics(base_url)

    warnings = [r for r in caplog.records if r.getMessage() == "delivery attempt failed, retrying"]
    assert {r.delivery_id for r in warnings} == delivery_ids
    for record in warnings:
        assert record.levelno == logging.WARNING
        assert record.channel == "email"
        assert record.attempt == 1
        assert "connect" in record.reason.lower()
        assert record.retry_in_seconds == 5.0
    assert figures['klaspost_notifier_deliveries{channel="email",status="pending"}'] == PARENTS
    assert figures['klaspost_notifier_deliveries{channel="email",status="sent"}'] == 0
    assert figures['klaspost_notifier_deliveries{channel="push",status="pending"}'] == 0
    assert figures['klaspost_notifier_delivery_retries_total{channel="email"}'] == PARENTS
    assert figures['klaspost_notifier_delivery_failures_total{channel="email"}'] == 0
    assert figures['klaspost_notifier_oldest_pending_seconds{table="deliveries"}'] > 0
    assert figures['klaspost_notifier_oldest_pending_seconds{table="mails"}'] == 0
    assert figures['klaspost_notifier_mails{kind="invitation",status="pending"}'] == 0


async def test_a_delivery_given_up_on_is_logged_and_counted_as_failed(caplog):
    caplog.set_level(logging.WARNING, logger="notifier.delivery")
    # Email is kept trying for a day (delivery_email_retry_hours); 0 here: the attempts alone decide.
    async with notifier_without_smtp(delivery_max_attempts=1, delivery_email_retry_hours=0) as (
        app,
        base_url,
    ):
        await post_to_parents(app[POOL], PARENTS)

        async def failed() -> bool:
            return bool(
                await app[POOL].fetchval(
                    "SELECT count(*) = $1 FROM deliveries WHERE status = 'failed'", PARENTS
                )
            )

        await eventually(failed, what="every delivery given up on")
        figures = await metrics(base_url)

    given_up = [r for r in caplog.records if r.getMessage() == "delivery failed"]
    assert len(given_up) == PARENTS
    assert all(r.channel == "email" and r.attempt == 1 for r in given_up)
    assert figures['klaspost_notifier_deliveries{channel="email",status="failed"}'] == PARENTS
    assert figures['klaspost_notifier_delivery_failures_total{channel="email"}'] == PARENTS
    assert figures['klaspost_notifier_delivery_retries_total{channel="email"}'] == 0
    assert figures['klaspost_notifier_oldest_pending_seconds{table="deliveries"}'] == 0
