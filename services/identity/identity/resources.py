"""Identity's own resources beside the shared ones: the token signer."""

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from identity.login import store
from identity.settings import Settings
from identity.tokens import TokenSigner
from shared.app import POOL, SETTINGS, settings_of
from shared.jobs import PeriodicJob

SIGNER = web.AppKey("signer", TokenSigner)
# Windows older than a day say nothing about guessing now.
LOGIN_ATTEMPTS_KEPT_SECONDS = 86_400


async def signer(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    app[SIGNER] = TokenSigner.from_settings(settings)
    yield


async def login_attempts_cleanup(app: web.Application) -> AsyncIterator[None]:
    async def forget(conn: asyncpg.Connection) -> None:
        await store.forget_attempts_before(conn, LOGIN_ATTEMPTS_KEPT_SECONDS)

    job = PeriodicJob(app[POOL], "identity-login-attempts", app[SETTINGS].housekeeping_every_seconds, forget)
    await job.start()
    yield
    await job.stop()
