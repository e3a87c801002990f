"""Notifier: the routes and the pieces that make the service."""

from pathlib import Path

from notifier import api, delivery_report_api, preferences_api
from notifier.delivery_metrics import delivery_metrics
from notifier.delivery_reports import delivery_reports
from notifier.domain import (
    DeviceList,
    DeviceView,
    PostDeliveryReport,
    Preferences,
    RegisterDevice,
    UnsubscribeView,
    VapidKey,
)
from notifier.events import default_zone, handlers
from notifier.resources import delivery
from notifier.schedule import schedule
from shared.app import ServiceSpec
from shared.http import Route

routes = [
    Route(
        "GET",
        "/push/vapid-public-key",
        api.vapid_key,
        "The key a browser subscribes to Web Push with",
        response=VapidKey,
        auth="none",
        # When this server has no VAPID key, Web Push is off.
        errors=(503,),
    ),
    Route(
        "POST",
        "/devices",
        api.register_device,
        "Register this browser's Web Push subscription or this app's FCM or APNs token",
        body=RegisterDevice,
        response=DeviceView,
        status=201,
        # 409: the endpoint is another person's device and the keys are not that browser's.
        # 429: too many registrations by this person in the last hour (Retry-After).
        errors=(409, 429),
    ),
    Route("GET", "/devices", api.list_devices, "The caller's registered devices", response=DeviceList),
    Route(
        "DELETE", "/devices/{device_id}", api.delete_device, "Stop push notifications to a device", status=204
    ),
    Route(
        "GET",
        "/preferences",
        preferences_api.get_preferences,
        "How and when the caller hears of each category of message, and their quiet hours",
        response=Preferences,
    ),
    Route(
        "PUT",
        "/preferences",
        preferences_api.put_preferences,
        "Set how and when the caller hears of each category of message, and their quiet hours",
        body=Preferences,
        response=Preferences,
    ),
    Route(
        "GET",
        "/unsubscribe/{token}",
        preferences_api.show_unsubscribe,
        "What a one-click unsubscribe link from a mail does (changes nothing)",
        response=UnsubscribeView,
        auth="none",
        also_as=("text/html",),
    ),
    Route(
        "POST",
        "/unsubscribe/{token}",
        preferences_api.unsubscribe_one_click,
        "One-click unsubscribe (RFC 8058): turn off the emails the link names",
        response=UnsubscribeView,
        # RFC 8058: mail programs send "List-Unsubscribe=One-Click" as a form; the body is not needed.
        auth="none",
        also_as=("text/html",),
    ),
    Route(
        "GET",
        "/reports/posts/{post_id}",
        delivery_report_api.get_post_report,
        "For the operator: where the messages about a post stand (targeted, delivered, failed, pending, held)",
        response=PostDeliveryReport,
        auth="operator",
    ),
]


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="notifier",
        routes=routes,
        handlers=handlers,
        migrations=Path(__file__).parent / "migrations",
        contexts=[default_zone, delivery, delivery_reports, schedule],
        metrics=delivery_metrics,
    )
