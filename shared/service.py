"""Start a service as a process: ``python -m posts`` and friends end up here."""

from aiohttp import web

from shared.app import ServiceSpec, create_app
from shared.logs import setup_logging
from shared.settings import ServiceSettings


def run(spec: ServiceSpec, settings: ServiceSettings) -> None:
    setup_logging(spec.name, settings.log_level, settings.log_json)
    web.run_app(
        create_app(spec, settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
    )
