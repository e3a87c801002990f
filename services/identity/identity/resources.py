"""Identity's own resources beside the shared ones: the token signer."""

from collections.abc import AsyncIterator

from aiohttp import web

from identity.settings import Settings
from identity.tokens import TokenSigner
from shared.app import SETTINGS

SIGNER = web.AppKey("signer", TokenSigner)


async def signer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert isinstance(settings, Settings)
    app[SIGNER] = TokenSigner.from_settings(settings)
    yield
