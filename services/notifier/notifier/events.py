"""What the notifier does with other services' events: keep its copy of people, groups and
memberships, and turn a published post into deliveries to every parent of the group."""

import uuid

import asyncpg

from notifier import store
from notifier.delivery import NOTIFY_CHANNEL
from shared.consumer import Handlers
from shared.contracts import (
    GroupCreated,
    PersonRegistered,
    PostPublished,
)
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy

handlers = Handlers()
keep_membership_copy(handlers)


@handlers.on(PersonRegistered)
async def person_registered(conn: asyncpg.Connection, _env: Envelope, event: PersonRegistered) -> None:
    await store.upsert_person(
        conn, event.person_id, event.school_id, event.email, event.display_name, event.locale
    )


@handlers.on(GroupCreated)
async def group_created(conn: asyncpg.Connection, _env: Envelope, event: GroupCreated) -> None:
    await store.upsert_group(conn, event.group_id, event.school_id, event.name)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, env: Envelope, event: PostPublished) -> None:
    created = await store.create_post_notification(
        conn, uuid.uuid4(), env.school_id, event.group_id, event.post_id, event.excerpt, env.correlation_id
    )
    if created:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
