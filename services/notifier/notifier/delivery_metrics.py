"""What /metrics tells an operator about delivery: the backlog by channel and state, how long the
oldest pending message has waited, and how many attempts failed since the notifier started.

No figure scans a whole table: the backlog (pending, held) is read through partial indexes on it, and sent and failed rows are counted over the last day only (through the created_at
indexes), since they pile up with every post."""

from aiohttp import web

from notifier.resources import DELIVERER
from shared.app import POOL

# Every channel and state is printed, also at zero, so a dashboard's series never vanishes.
_CHANNELS = ("email", "push")
_STATUSES = ("pending", "held", "sent", "failed")
_PROVIDERS = ("smtp", "webpush", "fcm", "apns")
# Sent and failed rows are counted over this window.
WINDOW_SECONDS = 86_400.0
# Rows by (channel or kind, status): $1 the window in seconds. The backlog (pending, held) through
# partial indexes on it (deliveries_backlog, mails_due), sent and failed rows through created_at.
DELIVERY_COUNTS = """
    SELECT channel, status, count(*) AS n FROM deliveries WHERE status NOT IN ('sent', 'failed') GROUP BY 1, 2
    UNION ALL
    SELECT channel, status, count(*) FROM deliveries
    WHERE created_at > now() - $1 * interval '1 second' AND status IN ('sent', 'failed') GROUP BY 1, 2"""
MAIL_COUNTS = """
    SELECT kind, status, count(*) AS n FROM mails WHERE status = 'pending' GROUP BY 1, 2
    UNION ALL
    SELECT kind, status, count(*) FROM mails
    WHERE created_at > now() - $1 * interval '1 second' AND status IN ('sent', 'failed') GROUP BY 1, 2"""
_MAIL_KINDS = ("invitation", "invitation_reminder", "password_reset", "welcome")


async def delivery_metrics(app: web.Application) -> list[str]:
    """Prometheus text lines: ``klaspost_notifier_deliveries{channel,status}`` and
    ``klaspost_notifier_mails{kind,status}`` (rows, gauges: pending and held all of them, sent and
    failed those made in the last day), ``klaspost_notifier_oldest_pending_seconds{table}`` (age of
    the oldest pending row, 0 when none), the counters since start
    ``klaspost_notifier_delivery_retries_total{channel}`` and ``klaspost_notifier_delivery_failures_total
    {channel}`` (attempts that failed and will be retried; messages given up on), and the same by
    provider (smtp, webpush, fcm, apns) with ``klaspost_notifier_provider_sent_total{provider}``."""
    async with app[POOL].acquire() as conn:
        deliveries = await conn.fetch(DELIVERY_COUNTS, WINDOW_SECONDS)
        mails = await conn.fetch(MAIL_COUNTS, WINDOW_SECONDS)
        oldest = await conn.fetchrow(
            """SELECT (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM deliveries
                       WHERE status = 'pending') AS deliveries,
                      (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM mails
                       WHERE status = 'pending') AS mails"""
        )
    assert oldest is not None
    delivery_counts = {(r["channel"], r["status"]): r["n"] for r in deliveries}
    mail_counts = {(r["kind"], r["status"]): r["n"] for r in mails}
    lines = ["# TYPE klaspost_notifier_deliveries gauge"]
    for channel in _CHANNELS:
        for status in _STATUSES:
            count = delivery_counts.get((channel, status), 0)
            lines.append(f'klaspost_notifier_deliveries{{channel="{channel}",status="{status}"}} {count}')
    lines.append("# TYPE klaspost_notifier_mails gauge")
    for kind in _MAIL_KINDS:
        for status in _STATUSES:
            lines.append(
                f'klaspost_notifier_mails{{kind="{kind}",status="{status}"}} {mail_counts.get((kind, status), 0)}'
            )
    lines.append("# TYPE klaspost_notifier_oldest_pending_seconds gauge")
    for table in ("deliveries", "mails"):
        lines.append(
            f'klaspost_notifier_oldest_pending_seconds{{table="{table}"}} {float(oldest[table]):.3f}'
        )
    deliverer = app.get(DELIVERER)
    for name, counts in (
        ("klaspost_notifier_delivery_retries_total", deliverer.retries if deliverer else {}),
        ("klaspost_notifier_delivery_failures_total", deliverer.failures if deliverer else {}),
    ):
        lines.append(f"# TYPE {name} counter")
        for channel in _CHANNELS:
            lines.append(f'{name}{{channel="{channel}"}} {counts.get(channel, 0)}')
    for name, counts in (
        ("klaspost_notifier_provider_sent_total", deliverer.provider_sent if deliverer else {}),
        ("klaspost_notifier_provider_retries_total", deliverer.provider_retries if deliverer else {}),
        ("klaspost_notifier_provider_failures_total", deliverer.provider_failures if deliverer else {}),
    ):
        lines.append(f"# TYPE {name} counter")
        for provider in _PROVIDERS:
            lines.append(f'{name}{{provider="{provider}"}} {counts.get(provider, 0)}')
    return lines
