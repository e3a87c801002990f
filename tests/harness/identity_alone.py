"""Identity alone, for tests of its own rules: the real app on a fresh database and RabbitMQ vhost,
with a queue of its own that catches every event identity publishes (the invitation events carry
the clear access code, as the notifier receives them)."""

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from identity.app import spec
from identity.resources import SIGNER
from identity.settings import Settings
from identity.tokens import generate_signing_key_pem
from shared.app import POOL
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
from shared.tokens import Caller
from tests.harness.system import FAST, OPERATOR_KEY, RunningService, eventually, start_service

PASSWORD = "correct horse battery staple"
SCHOOL_YEAR = "2026-2027"


@dataclass
class Identity:
    service: RunningService
    broker: AbstractRobustConnection
    http: aiohttp.ClientSession
    # Every event identity published, as received from the broker, in order.
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.service.app[POOL]

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        source: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        """One request; ``source`` is the client address to send from (any 127.x.y.z). Returns the
        status, the body (JSON or text) and the headers."""
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        session = self.http
        if source is not None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
        try:
            async with session.request(method, self.service.url + path, headers=headers, **kwargs) as r:
                body = await r.json() if r.content_type == "application/json" else await r.text()
                return r.status, body, dict(r.headers)
        finally:
            if source is not None:
                await session.close()

    def invitations_to(self, email: str) -> list[dict[str, Any]]:
        """The InvitationIssued payloads sent to ``email`` so far, oldest first."""
        return [
            e["payload"]
            for e in self.events
            if e["type"] == "identity.invitation_issued" and e["payload"]["email"].lower() == email.lower()
        ]

    async def code_for(self, email: str, count: int = 1) -> str:
        """The access code of the ``count``-th invitation to ``email``, waiting for it to be published."""

        async def arrived() -> bool:
            return len(self.invitations_to(email)) >= count

        await eventually(arrived, within=15, what=f"invitation {count} to {email}")
        return str(self.invitations_to(email)[count - 1]["access_code"])


@asynccontextmanager
async def running_identity(**overrides: Any) -> AsyncIterator[Identity]:
    """Identity on its own database and vhost, its events caught; everything removed afterwards.
    ``overrides`` are settings (e.g. trusted_proxies)."""
    amqp_url = await create_vhost()
    database_url = await create_database("identity")
    settings = Settings.model_validate(
        {
            "http_port": free_port(),
            "database_url": database_url,
            "token_signing_key": generate_signing_key_pem(),
            "operator_api_key": OPERATOR_KEY,
            "amqp_url": amqp_url,
            **FAST,
            **overrides,
        }
    )
    broker = await aio_pika.connect_robust(amqp_url)
    channel = await broker.channel()
    exchange = await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="identity.#")
    service = await start_service(spec(), settings)
    identity = Identity(service, broker, aiohttp.ClientSession())

    async def caught(message: AbstractIncomingMessage) -> None:
        async with message.process():
            identity.events.append(json.loads(message.body))

    await queue.consume(caught)
    try:
        yield identity
    finally:
        await identity.http.close()
        await service.runner.cleanup()
        await broker.close()
        await drop_database(database_url)
        await delete_vhost(amqp_url)


@dataclass
class SchoolAlone:
    school_id: uuid.UUID
    admin_token: str
    groups: dict[str, uuid.UUID] = field(default_factory=dict)


def new_email(name: str) -> str:
    return f"{name}.{secrets.token_hex(4)}@ouders.example.nl"


def token_for(identity: Identity, person_id: uuid.UUID | str) -> str:
    """An access token for the account, as logging in would give (login is tested on its own)."""
    return identity.service.app[SIGNER].issue(Caller(person_id=uuid.UUID(str(person_id))))


async def make_school(identity: Identity, *groups: str, **settings: Any) -> SchoolAlone:
    """A school with its admin logged in, the current school year and ``groups`` in it; not launched.
    ``settings`` are PATCHed (e.g. reminder_days)."""
    admin = new_email("admin")
    status, body, _ = await identity.call(
        "POST",
        "/schools",
        headers={"X-Operator-Key": OPERATOR_KEY},
        json={
            "name": "OBS De Lichtstraat",
            "admin": {"email": admin, "display_name": "Dir", "password": PASSWORD},
        },
    )
    assert status == 201, body
    school = SchoolAlone(uuid.UUID(body["school_id"]), token_for(identity, body["admin_id"]))
    status, body, _ = await identity.call(
        "POST", f"/schools/{school.school_id}/school-years", school.admin_token, json={"name": SCHOOL_YEAR}
    )
    assert status == 201, body
    for name in groups:
        status, body, _ = await identity.call(
            "POST",
            f"/schools/{school.school_id}/groups",
            school.admin_token,
            json={"name": name, "school_year": SCHOOL_YEAR},
        )
        assert status == 201, body
        school.groups[name] = uuid.UUID(body["group_id"])
    if settings:
        status, body, _ = await identity.call(
            "PATCH", f"/schools/{school.school_id}", school.admin_token, json=settings
        )
        assert status == 200, body
    return school


async def add_child(
    identity: Identity, school: SchoolAlone, group: str | None, *guardians: str, name: str = "Emma"
) -> dict[str, Any]:
    """A child placed in ``group`` (None: not placed) with guardians at these addresses; returns
    the child as identity shows it (child_id, guardians with their guardianship_id)."""
    status, body, _ = await identity.call(
        "POST",
        f"/schools/{school.school_id}/children",
        school.admin_token,
        json={
            "given_name": name,
            "family_name": "Jansen",
            "group_id": str(school.groups[group]) if group else None,
            "guardians": [{"email": e} for e in guardians],
        },
    )
    assert status == 201, body
    return dict(body)


async def launch(identity: Identity, school: SchoolAlone) -> dict[str, Any]:
    """Launch the school's invitations and wait until the launch is done; returns it."""
    status, body, headers = await identity.call(
        "POST", f"/schools/{school.school_id}/invitations", school.admin_token
    )
    assert status == 202, body
    return await launch_done(identity, school, headers["Location"])


async def launch_done(identity: Identity, school: SchoolAlone, location: str) -> dict[str, Any]:
    for _ in range(300):
        status, body, _ = await identity.call("GET", location, school.admin_token)
        assert status == 200, body
        if body["status"] == "done":
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError("the launch did not finish")


async def redeem(
    identity: Identity,
    code: str,
    token: str | None = None,
    source: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> tuple[int, Any, dict[str, str]]:
    """POST /access-codes/redeem: with a token to link that account, else making one; from the
    client address ``source`` with extra ``headers`` if given."""
    body = {"code": code, **fields}
    if token is None:
        body = {"display_name": "Ouder", "password": "another good passphrase", **body}
    return await identity.call(
        "POST", "/access-codes/redeem", token, source=source, headers=headers or {}, json=body
    )
