"""What the notifier does with other services' events: keep its copy of accounts, schools, groups
and memberships, turn a published post into deliveries to every parent of the group, and queue the
one-off mails (invitations, password links) identity asks for."""

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from notifier import store
from notifier.delivery import NOTIFY_CHANNEL
from notifier.mails import MailKind
from shared.consumer import Handlers
from shared.contracts import (
    AccountChanged,
    GroupChanged,
    InvitationIssued,
    PasswordResetRequested,
    PostDeleted,
    PostPublished,
    PostUpdated,
    SchoolChanged,
)
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy

handlers = Handlers()
keep_membership_copy(handlers)


@handlers.on(AccountChanged)
async def account_changed(conn: asyncpg.Connection, _env: Envelope, event: AccountChanged) -> None:
    await store.upsert_person(
        conn, event.person_id, event.email, event.display_name, event.locale, event.revision
    )


@handlers.on(SchoolChanged)
async def school_changed(conn: asyncpg.Connection, _env: Envelope, event: SchoolChanged) -> None:
    await store.upsert_school(
        conn, event.school_id, event.name, event.time_zone, event.locale, event.revision
    )


@handlers.on(GroupChanged)
async def group_changed(conn: asyncpg.Connection, _env: Envelope, event: GroupChanged) -> None:
    await store.upsert_group(conn, event.group_id, event.school_id, event.name, event.revision)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, env: Envelope, event: PostPublished) -> None:
    created = await store.create_post_notification(
        conn, uuid.uuid4(), env.school_id, event.group_id, event.post_id, event.excerpt, env.correlation_id
    )
    if created:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


@handlers.on(PostUpdated)
async def post_updated(conn: asyncpg.Connection, _env: Envelope, event: PostUpdated) -> None:
    # Nobody is notified again; what is still to be sent says what the post says now.
    await store.update_excerpt(conn, event.post_id, event.excerpt)


@handlers.on(PostDeleted)
async def post_deleted(conn: asyncpg.Connection, _env: Envelope, event: PostDeleted) -> None:
    # A deleted post disappears everywhere: what was not sent yet of it is not sent (a delivery a
    # sender holds at this very moment may still go out).
    await store.cancel_post_deliveries(conn, event.post_id)


@handlers.on(InvitationIssued)
async def invitation_issued(conn: asyncpg.Connection, env: Envelope, event: InvitationIssued) -> None:
    context = {
        "school_name": event.school_name,
        "child_name": event.child_name,
        "expires_at": _utc(event.expires_at).isoformat(),
        "reminder": event.reminder,
    }
    kind: MailKind = "invitation_reminder" if event.reminder else "invitation"
    await _queue_mail(
        conn, env, kind, event.email, event.locale, context, event.access_code, event.school_id, None
    )


@handlers.on(PasswordResetRequested)
async def password_reset_requested(
    conn: asyncpg.Connection, env: Envelope, event: PasswordResetRequested
) -> None:
    context = {"school_name": event.school_name, "expires_at": _utc(event.expires_at).isoformat()}
    kind: MailKind = "welcome" if event.purpose == "welcome" else "password_reset"
    await _queue_mail(
        conn, env, kind, event.email, event.locale, context, event.reset_token, env.school_id, event.person_id
    )


def _utc(moment: datetime) -> datetime:
    """A moment without a zone is taken as UTC, so that it can be compared and shown in any zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _queue_mail(
    conn: asyncpg.Connection,
    env: Envelope,
    kind: MailKind,
    to_email: str,
    locale: str,
    context: dict[str, Any],
    secret: str,
    school_id: uuid.UUID | None,
    person_id: uuid.UUID | None,
) -> None:
    # The event's id is the mail's: an event handled twice (its inbox row trimmed) makes no second mail.
    queued = await store.queue_mail(
        conn, env.event_id, kind, to_email, locale, context, secret, school_id, person_id, env.correlation_id
    )
    if queued:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
