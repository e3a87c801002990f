"""Notifier's HTTP handlers: a parent's devices (Web Push, FCM, APNs)."""

import logging
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from yarl import URL

from notifier import device_limits, store
from notifier.domain import DeviceList, DeviceView, RegisterDevice, VapidKey, endpoint_problem
from notifier.resources import REGISTRATIONS
from notifier.settings import Settings
from shared.app import POOL, settings_of
from shared.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.tokens import require_caller

log = logging.getLogger(__name__)


def _view(row: asyncpg.Record) -> DeviceView:
    # The endpoint itself is a capability (anyone holding it can push): only its host is shown.
    return DeviceView(
        device_id=row["device_id"],
        kind=row["kind"],
        endpoint_host=(urlsplit(row["endpoint"]).hostname or "") if row["endpoint"] else None,
        created_at=row["created_at"],
        moved_from_another_account=row["moved"],
    )


def _canonical_endpoint(endpoint: str) -> str:
    """The one spelling of a push resource's URL (one ``endpoint_problem`` accepted): the URL the
    sender's HTTP client (aiohttp, by yarl) sends to, without the fragment (never sent). yarl writes
    scheme and host in lower case, no default port, no dot-segments and no percent-encoded unreserved
    character (RFC 3986 6.2.2). Two spellings of one resource are one device: ``HTTPS://FCM...:443/…#x``
    or ``…/fcm/x/../send/…`` registered another person's browser anew, past the 409 for an endpoint
    registered to someone else. Raises ValueError for a port out of range."""
    return str(URL(endpoint).with_fragment(None))


async def vapid_key(request: web.Request) -> web.Response:
    """The applicationServerKey a browser subscribes with."""
    key = settings_of(request.app, Settings).vapid_public_key
    if not key:
        raise ServiceUnavailable("Web Push is not configured on this server")
    return json_response(VapidKey(application_server_key=key))


async def register_device(request: web.Request) -> web.Response:
    """A browser's subscription or an app's FCM/APNs token. A kind whose channel this server does not
    send on (no FCM credentials, no APNs key) is refused with 422 naming ``kind``, so the app knows at
    once rather than waiting for pushes that never come."""
    caller = require_caller(request)
    # Counted before the body is read: malformed registrations count too (device_limits.py).
    async with request.app[POOL].acquire() as conn:
        await request.app[REGISTRATIONS].check(conn, caller.person_id)
    command = await read_json(request, RegisterDevice)
    settings = settings_of(request.app, Settings)
    shape = command.shape_problem()
    if shape:
        raise ValidationFailed("this device is not accepted", [{"field": shape[0], "problem": shape[1]}])
    unconfigured = settings.unconfigured_push(command.kind)
    if unconfigured:
        raise ValidationFailed(
            "this server does not send to such devices", [{"field": "kind", "problem": unconfigured}]
        )
    if command.kind != "webpush":
        assert command.token is not None  # shape_problem
        token = command.token.lower() if command.kind == "apns" else command.token
        async with request.app[POOL].acquire() as conn:
            row = await device_limits.register_native(
                conn, caller.person_id, command.kind, token, settings.devices_per_person
            )
        if row["moved"]:
            # Never the token: it is what lets anyone push to the device.
            log.warning(
                "push device moved to another account",
                extra={
                    "device_id": str(row["device_id"]),
                    "kind": command.kind,
                    "person_id": str(caller.person_id),
                },
            )
        return json_response(_view(row), status=201)
    assert command.subscription is not None  # shape_problem
    problem = endpoint_problem(command.subscription.endpoint, settings.push_allowed_hosts)
    if problem:
        raise ValidationFailed(
            "this push subscription is not accepted", [{"field": "subscription.endpoint", "problem": problem}]
        )
    try:
        endpoint = _canonical_endpoint(command.subscription.endpoint)
    except ValueError as exc:  # a port out of range
        raise ValidationFailed(
            "this push subscription is not accepted",
            [{"field": "subscription.endpoint", "problem": "not a push service URL"}],
        ) from exc
    async with request.app[POOL].acquire() as conn:
        found = await device_limits.register_webpush(
            conn,
            caller.person_id,
            endpoint,
            command.subscription.keys.p256dh,
            command.subscription.keys.auth,
            settings.devices_per_person,
        )
    if found is None:
        # Only the endpoint URL matched: proof of holding a link, not of being that browser.
        raise Conflict(
            "this push subscription is registered to another account; subscribe again in this browser "
            "to get a new one"
        )
    if found["moved"]:
        log.warning(
            "push device moved to another account",
            extra={
                "device_id": str(found["device_id"]),
                "kind": "webpush",
                "person_id": str(caller.person_id),
            },
        )
    return json_response(_view(found), status=201)


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
