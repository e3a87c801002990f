"""The delivery report for operators: ``GET /reports/posts/{post_id}`` with the operator key.

Counted from the deliveries at the moment of asking (not the last DeliveryReport event, which trails
by up to a report period), so it can be held against what the SMTP relay and the push services say
they received. 404 for a post the notifier never took in (no notification for it).
"""

import hmac
import uuid

import asyncpg
from aiohttp import web

from notifier.domain import ChannelCounts, FailureGroup, HeldCounts, PostDeliveryReport
from notifier.settings import Settings
from shared.app import POOL, settings_of
from shared.errors import NotFound, Unauthorized
from shared.http import json_response, path_id


def require_operator(request: web.Request) -> None:
    """401 unless the X-Operator-Key header is the configured OPERATOR_API_KEY (compared in constant
    time); with no key configured, operator routes answer 401 to everyone."""
    settings = settings_of(request.app, Settings)
    key = settings.operator_api_key.get_secret_value() if settings.operator_api_key else None
    # Its own header: the Authorization header is for access tokens.
    given = request.headers.get("X-Operator-Key", "").encode()
    if key is None or not hmac.compare_digest(given, key.encode()):
        raise Unauthorized("this endpoint needs the operator key")


_COUNTS = """
    SELECT n.notification_id, n.school_id, n.group_id, n.created_at, n.urgent,
           count(DISTINCT d.person_id) AS targeted,
           count(d.delivery_id) AS deliveries,
           count(*) FILTER (WHERE d.status = 'sent' AND d.channel = 'email') AS sent_email,
           count(*) FILTER (WHERE d.status = 'sent' AND d.channel = 'push') AS sent_push,
           count(*) FILTER (WHERE d.status = 'failed') AS failed,
           count(*) FILTER (WHERE d.status = 'pending') AS pending,
           count(*) FILTER (WHERE d.status = 'pending' AND d.last_error IS NOT NULL) AS retrying,
           count(*) FILTER (WHERE d.status = 'held' AND d.hold_reason = 'quiet_hours') AS held_quiet_hours,
           count(*) FILTER (WHERE d.status = 'held' AND d.hold_reason = 'digest') AS held_digest,
           count(*) FILTER (WHERE d.status = 'held' AND d.hold_reason = 'scheduled') AS held_scheduled
    FROM notifications n LEFT JOIN deliveries d USING (notification_id)
    WHERE n.post_id = $1
    GROUP BY n.notification_id"""

_BY_PROVIDER = """
    SELECT d.provider, count(*) AS sent FROM deliveries d
    WHERE d.notification_id = $1 AND d.status = 'sent' GROUP BY d.provider"""

_FAILURES = """
    SELECT d.channel, d.provider, coalesce(d.last_error, 'unknown') AS reason, count(*) AS count
    FROM deliveries d WHERE d.notification_id = $1 AND d.status = 'failed'
    GROUP BY 1, 2, 3 ORDER BY count(*) DESC, 3"""


async def post_report(conn: asyncpg.Connection, post_id: uuid.UUID) -> PostDeliveryReport | None:
    """The report of one post, or None when the notifier has no notification for it."""
    row = await conn.fetchrow(_COUNTS, post_id)
    if row is None:
        return None
    providers = await conn.fetch(_BY_PROVIDER, row["notification_id"])
    failures = await conn.fetch(_FAILURES, row["notification_id"])
    return PostDeliveryReport(
        post_id=post_id,
        school_id=row["school_id"],
        group_id=row["group_id"],
        created_at=row["created_at"],
        urgent=row["urgent"],
        targeted=row["targeted"],
        deliveries=row["deliveries"],
        delivered=ChannelCounts(email=row["sent_email"], push=row["sent_push"]),
        delivered_by_provider={r["provider"]: r["sent"] for r in providers},
        failed=row["failed"],
        failures=[
            FailureGroup(channel=f["channel"], provider=f["provider"], reason=f["reason"], count=f["count"])
            for f in failures
        ],
        pending=row["pending"],
        retrying=row["retrying"],
        held=HeldCounts(
            quiet_hours=row["held_quiet_hours"], digest=row["held_digest"], scheduled=row["held_scheduled"]
        ),
    )


async def get_post_report(request: web.Request) -> web.Response:
    require_operator(request)
    post_id = path_id(request, "post_id")
    async with request.app[POOL].acquire() as conn:
        report = await post_report(conn, post_id)
    if report is None:
        raise NotFound("the notifier has no messages for this post")
    return json_response(report)
