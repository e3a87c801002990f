"""Identity's own resources beside the shared ones: the token signer, and login's housekeeping."""

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from identity.login import refresh, store
from identity.login.throttle import LoginRules
from identity.settings import Settings
from identity.tokens import TokenSigner
from shared.app import POOL, settings_of
from shared.jobs import PeriodicJob

SIGNER = web.AppKey("signer", TokenSigner)
# The reset and set-password windows are an hour at most (identity.login.api).
RESET_WINDOWS_SECONDS = 3_600


async def signer(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app, Settings)
    app[SIGNER] = TokenSigner.from_settings(settings)
    yield


async def login_cleanup(app: web.Application) -> AsyncIterator[None]:
    """Forget login attempts older than every window, clients not seen for KNOWN_CLIENT_DAYS, expired
    reset links and ended refresh-token families; once per HOUSEKEEPING_EVERY_SECONDS across replicas."""
    settings = settings_of(app, Settings)
    kept_seconds = max(LoginRules.from_settings(settings).longest_window, RESET_WINDOWS_SECONDS)
    lifetime = refresh.Lifetime.from_settings(settings)

    async def forget(conn: asyncpg.Connection) -> None:
        await store.forget_old(conn, kept_seconds, settings.known_client_days)
        await refresh.forget_ended(conn, lifetime)

    job = PeriodicJob(app[POOL], "identity-login-cleanup", settings.housekeeping_every_seconds, forget)
    await job.start()
    yield
    await job.stop()
