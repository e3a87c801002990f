"""What /metrics tells an operator about delivery: the backlog by channel and state, how long the
oldest pending message has waited, and how many attempts failed since the notifier started."""

from aiohttp import web

from notifier.resources import DELIVERER
from shared.app import POOL

# Every channel and state is printed, also at zero, so a dashboard's series never vanishes.
_CHANNELS = ("email", "push")
_STATUSES = ("pending", "sent", "failed")
_MAIL_KINDS = ("invitation", "invitation_reminder", "password_reset", "welcome")


async def delivery_metrics(app: web.Application) -> list[str]:
    """Prometheus text lines: ``klaspost_notifier_deliveries{channel,status}`` and
    ``klaspost_notifier_mails{kind,status}`` (rows, gauges), ``klaspost_notifier_oldest_pending_seconds
    {table}`` (age of the oldest pending row, 0 when none), and the counters since start
    ``klaspost_notifier_delivery_retries_total{channel}`` and ``klaspost_notifier_delivery_failures_total
    {channel}`` (attempts that failed and will be retried; messages given up on)."""
    async with app[POOL].acquire() as conn:
        deliveries = await conn.fetch("SELECT channel, status, count(*) AS n FROM deliveries GROUP BY 1, 2")
        mails = await conn.fetch("SELECT kind, status, count(*) AS n FROM mails GROUP BY 1, 2")
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
    return lines
