"""Notifier's HTTP handlers: a parent's devices for Web Push."""

import uuid
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web

from notifier import store
from notifier.domain import DeviceList, DeviceView, RegisterDevice, VapidKey, endpoint_problem
from notifier.settings import Settings
from shared.app import POOL, settings_of
from shared.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.tokens import require_caller


def _view(row: asyncpg.Record) -> DeviceView:
    # The endpoint itself is a capability (anyone holding it can push): only its host is shown.
    return DeviceView(
        device_id=row["device_id"],
        endpoint_host=urlsplit(row["endpoint"]).hostname or "",
        created_at=row["created_at"],
    )


async def vapid_key(request: web.Request) -> web.Response:
    """The applicationServerKey a browser subscribes with."""
    key = settings_of(request.app, Settings).vapid_public_key
    if not key:
        raise ServiceUnavailable("Web Push is not configured on this server")
    return json_response(VapidKey(application_server_key=key))


async def register_device(request: web.Request) -> web.Response:
    caller = require_caller(request)
    command = await read_json(request, RegisterDevice)
    problem = endpoint_problem(
        command.subscription.endpoint, settings_of(request.app, Settings).push_allowed_hosts
    )
    if problem:
        raise ValidationFailed(
            "this push subscription is not accepted", [{"field": "subscription.endpoint", "problem": problem}]
        )
    async with request.app[POOL].acquire() as conn:
        row = await store.register_device(
            conn,
            uuid.uuid4(),
            caller.person_id,
            command.subscription.endpoint,
            command.subscription.keys.p256dh,
            command.subscription.keys.auth,
        )
    if row is None:
        # Only the endpoint URL matched: proof of holding a link, not of being that browser.
        raise Conflict(
            "this push subscription is registered to another account; subscribe again in this browser "
            "to get a new one"
        )
    return json_response(_view(row), status=201)


async def list_devices(request: web.Request) -> web.Response:
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn:
        rows = await store.devices_of(conn, caller.person_id)
    return json_response(DeviceList(devices=[_view(r) for r in rows]))


async def delete_device(request: web.Request) -> web.Response:
    caller = require_caller(request)
    device_id = path_id(request, "device_id")
    async with request.app[POOL].acquire() as conn:
        if not await store.delete_device(conn, device_id, caller.person_id):
            raise NotFound("no such device")
    return web.Response(status=204)
