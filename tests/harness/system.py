"""The whole Klaspost system in the test process: the four services as real aiohttp servers on
loopback ports, each with its own fresh database, sharing a fresh RabbitMQ vhost, fresh S3 buckets,
a real SMTP server and a local Web Push service."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from identity.app import spec as identity_spec
from identity.settings import Settings as IdentitySettings
from identity.tokens import generate_signing_key_pem
from media.app import spec as media_spec
from media.settings import Settings as MediaSettings
from notifier.app import spec as notifier_spec
from notifier.settings import Settings as NotifierSettings
from notifier.vapid import generate_vapid_keys
from posts.app import spec as posts_spec
from posts.settings import Settings as PostsSettings
from shared.app import ServiceSpec, create_app
from shared.settings import ServiceSettings
from shared.testing.apns import ApnsService
from shared.testing.fcm import FcmService
from shared.testing.infra import (
    create_bucket,
    create_database,
    create_vhost,
    delete_bucket,
    delete_vhost,
    drop_database,
    free_port,
    random_bucket_name,
    s3_test_config,
)
from shared.testing.pushservice import PushService
from shared.testing.smtp import SmtpSink

OPERATOR_KEY = "operator-test-key-0123456789abcdef"
# Short delays so retries show within a test; the same mechanism as in production.
FAST = {"retry_delays_ms": [200, 1000], "outbox_sweep_seconds": 0.5, "log_json": True}


@dataclass
class RunningService:
    name: str
    runner: web.AppRunner
    url: str
    database_url: str

    @property
    def app(self) -> web.Application:
        return self.runner.app


async def start_service(spec: ServiceSpec, settings: ServiceSettings) -> RunningService:
    runner = web.AppRunner(create_app(spec, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    return RunningService(spec.name, runner, f"http://127.0.0.1:{settings.http_port}", settings.database_url)


@dataclass
class System:
    amqp_url: str
    smtp: SmtpSink
    push: PushService
    buckets: list[str]
    services: dict[str, RunningService] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    # The native push services' stand-ins (Android, iPhone) the notifier sends to.
    fcm: FcmService = field(default_factory=FcmService)
    apns: ApnsService = field(default_factory=ApnsService)

    def url(self, service: str, path: str) -> str:
        return self.services[service].url + path

    async def call(
        self, method: str, service: str, path: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        assert self.http is not None
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url(service, path), headers=headers, **kwargs) as response:
            body = (
                await response.json()
                if response.content_type == "application/json"
                else await response.read()
            )
            return response.status, body


async def start_system() -> System:
    amqp_url = await create_vhost()
    smtp = SmtpSink()
    smtp.start()
    push = PushService()
    await push.start()
    originals, variants = random_bucket_name("originals"), random_bucket_name("variants")
    for bucket in (originals, variants):
        await asyncio.to_thread(create_bucket, bucket)
    system = System(amqp_url, smtp, push, [originals, variants])
    await system.fcm.start()
    await system.apns.start()
    common = {"amqp_url": amqp_url, **FAST}

    identity_port = free_port()
    jwks_url = f"http://127.0.0.1:{identity_port}/.well-known/jwks.json"
    vapid_private, vapid_public = generate_vapid_keys()
    settings: dict[str, ServiceSettings] = {
        # model_validate, not the constructor: the test process's environment must not leak in.
        "identity": IdentitySettings.model_validate(
            {
                "http_port": identity_port,
                "database_url": await create_database("identity"),
                "token_signing_key": generate_signing_key_pem(),
                "operator_api_key": OPERATOR_KEY,
                **common,
            }
        ),
        "posts": PostsSettings.model_validate(
            {
                "http_port": free_port(),
                "database_url": await create_database("posts"),
                "jwks_url": jwks_url,
                **common,
            }
        ),
        "media": MediaSettings.model_validate(
            {
                "http_port": free_port(),
                "database_url": await create_database("media"),
                "jwks_url": jwks_url,
                "s3_bucket_originals": originals,
                "s3_bucket_variants": variants,
                **s3_test_config(),
                **common,
            }
        ),
        "notifier": NotifierSettings.model_validate(
            {
                "http_port": free_port(),
                "database_url": await create_database("notifier"),
                "jwks_url": jwks_url,
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "vapid_private_key": vapid_private,
                "vapid_public_key": vapid_public,
                "vapid_subject": "mailto:beheer@klaspost.nl",
                "push_allowed_hosts": ["127.0.0.1"],
                "fcm_credentials": json.dumps(system.fcm.service_account()),
                "fcm_base_url": system.fcm.base_url,
                "apns_key": system.apns.key_pem,
                "apns_key_id": system.apns.key_id,
                "apns_team_id": system.apns.team_id,
                "apns_topic": system.apns.topic,
                "apns_host": system.apns.host,
                "apns_port": system.apns.port,
                "apns_ca_file": system.apns.ca_file,
                "public_base_url": "http://klaspost.test",
                "operator_api_key": OPERATOR_KEY,
                **common,
            }
        ),
    }
    specs = {
        "identity": identity_spec(),
        "posts": posts_spec(),
        "media": media_spec(),
        "notifier": notifier_spec(),
    }
    for name, spec in specs.items():
        system.services[name] = await start_service(spec, settings[name])
    system.http = aiohttp.ClientSession()
    return system


async def stop_system(system: System) -> None:
    if system.http is not None:
        await system.http.close()
    for service in reversed(list(system.services.values())):
        await service.runner.cleanup()
        await drop_database(service.database_url)
    await system.push.stop()
    await system.fcm.stop()
    await system.apns.stop()
    system.smtp.stop()
    for bucket in system.buckets:
        await asyncio.to_thread(delete_bucket, bucket)
    await delete_vhost(system.amqp_url)


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` holds: events cross services asynchronously."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.05)
