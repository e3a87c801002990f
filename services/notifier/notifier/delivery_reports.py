"""Delivery figures for posts' teacher view: now and then (once across replicas) the notifier counts
the messages of each recent post whose figures are not final yet and publishes a DeliveryReport for
each whose figures changed since the last report. Reads the deliveries table only; sending is
delivery.py's business."""

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from notifier.settings import Settings
from shared.app import POOL, settings_of
from shared.contracts import DeliveryReport
from shared.envelope import Event
from shared.jobs import PeriodicJob
from shared.outbox import publish_many

JOB_NAME = "notifier-delivery-reports"
# Posts older than this are not counted again (their messages are long final or given up on).
RECENT_DAYS = 14
BATCH = 2000

_REPORT = """
    WITH candidates AS (
        SELECT n.notification_id, n.post_id, n.school_id
        FROM notifications n
        LEFT JOIN delivery_reports r USING (notification_id)
        WHERE n.created_at > now() - $2 * interval '1 day' AND (r.notification_id IS NULL OR NOT r.final)
          AND n.post_id IS NOT NULL  -- posts only: digests, reminders and sign-up notices have no report
        ORDER BY n.created_at DESC
        LIMIT $1
    ), figures AS (
        SELECT c.notification_id,
               count(DISTINCT d.person_id) AS targeted,
               count(*) FILTER (WHERE d.channel = 'email' AND d.status = 'sent') AS delivered_email,
               count(*) FILTER (WHERE d.channel = 'push' AND d.status = 'sent') AS delivered_push,
               count(*) FILTER (WHERE d.status = 'failed') AS failed,
               count(*) FILTER (WHERE d.status = 'pending') AS pending,
               count(*) FILTER (WHERE d.status = 'held') AS held
        FROM candidates c LEFT JOIN deliveries d USING (notification_id)
        GROUP BY c.notification_id
    ), changed AS (
        INSERT INTO delivery_reports (notification_id, targeted, delivered_email, delivered_push, failed,
                                      pending, held, final, revision)
        SELECT notification_id, targeted, delivered_email, delivered_push, failed, pending, held,
               pending = 0 AND held = 0, nextval('delivery_report_revisions')
        FROM figures
        ON CONFLICT (notification_id) DO UPDATE SET
            targeted = EXCLUDED.targeted, delivered_email = EXCLUDED.delivered_email,
            delivered_push = EXCLUDED.delivered_push, failed = EXCLUDED.failed, pending = EXCLUDED.pending,
            held = EXCLUDED.held, final = EXCLUDED.final, revision = EXCLUDED.revision, reported_at = now()
        WHERE (delivery_reports.targeted, delivery_reports.delivered_email, delivery_reports.delivered_push,
               delivery_reports.failed, delivery_reports.pending, delivery_reports.held)
              IS DISTINCT FROM (EXCLUDED.targeted, EXCLUDED.delivered_email, EXCLUDED.delivered_push,
                                EXCLUDED.failed, EXCLUDED.pending, EXCLUDED.held)
        RETURNING *
    )
    SELECT ch.*, c.post_id, c.school_id FROM changed ch JOIN candidates c USING (notification_id)"""


async def report_deliveries(conn: asyncpg.Connection) -> int:
    """Publish a DeliveryReport for each recent post whose figures changed; returns how many.
    Runs in the job's transaction: the reports and their events commit together."""
    rows = await conn.fetch(_REPORT, BATCH, RECENT_DAYS)
    by_school: dict[uuid.UUID | None, list[Event]] = defaultdict(list)
    for row in rows:
        by_school[row["school_id"]].append(
            DeliveryReport(
                post_id=row["post_id"],
                targeted=row["targeted"],
                delivered_email=row["delivered_email"],
                delivered_push=row["delivered_push"],
                failed=row["failed"],
                pending=row["pending"],
                held=row["held"],
                reported_at=row["reported_at"],
                revision=row["revision"],
            )
        )
    for school_id, events in by_school.items():
        await publish_many(conn, events, school_id)
    return len(rows)


async def delivery_reports(app: web.Application) -> AsyncIterator[None]:
    """The periodic job, as an app context."""
    settings = settings_of(app, Settings)

    async def run(conn: asyncpg.Connection) -> None:
        await report_deliveries(conn)

    job = PeriodicJob(app[POOL], JOB_NAME, settings.delivery_report_seconds, run)
    await job.start()
    yield
    await job.stop()
