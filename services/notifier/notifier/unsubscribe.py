"""One-click unsubscribe (RFC 8058, RFC 2369): every email about posts, sign-ups, conferences and
reminders, and the digest, carries ``List-Unsubscribe: <https://…/unsubscribe/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. A POST to that URL turns that category of
email off for that person (their push choice stays); a GET only shows what a POST would do.

Not on one-off mails (invitation and its reminders, password reset, welcome): they are asked for, or
needed to get in at all, and carry a secret for one reader; an unsubscribe there would only lock a
parent out. They are sent as before, without these headers.

Turning off is one statement per link, on the rows as they are when it runs (after the person's
other preference changes, see preferences.one_change_at_a_time): a read followed by a write would let
a PUT /preferences or another click in between be overwritten with a channel made from what was read.

The token names the person and the category and is signed with HMAC-SHA256 under a key made once
per deployment (migration 005): unguessable (128-bit tag), no login needed, and it cannot be altered
to unsubscribe someone else. 49 URL-safe characters.
"""

import base64
import binascii
import hashlib
import hmac
import uuid
from typing import Literal, get_args

import asyncpg

from notifier import message_store
from notifier.preferences import (
    CATEGORIES,
    DEFAULT_CHOICE,
    Category,
    Channel,
    channels_for,
    one_change_at_a_time,
    without_email,
)

#: What a link turns off: one category, or every category whose emails go into the digest.
Target = Category | Literal["digest"]
_TARGETS: tuple[Target, ...] = (*CATEGORIES, "digest")
_TAG_BYTES = 16


def _tag(key: bytes, person_id: uuid.UUID, target: Target) -> bytes:
    return hmac.new(key, f"unsubscribe:{person_id}:{target}".encode(), hashlib.sha256).digest()[:_TAG_BYTES]


def make_token(key: bytes, person_id: uuid.UUID, target: Target) -> str:
    raw = person_id.bytes + bytes([_TARGETS.index(target)]) + _tag(key, person_id, target)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(key: bytes, token: str) -> tuple[uuid.UUID, Target] | None:
    """(person, target) of a genuine token, else None (malformed, or the tag does not match)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 + 1 + _TAG_BYTES or raw[16] >= len(_TARGETS):
        return None
    person_id, target = uuid.UUID(bytes=raw[:16]), _TARGETS[raw[16]]
    if not hmac.compare_digest(raw[17:], _tag(key, person_id, target)):
        return None
    return person_id, target


def unsubscribe_url(api_base_url: str, token: str) -> str:
    return f"{api_base_url.rstrip('/')}/unsubscribe/{token}"


def headers(api_base_url: str, key: bytes, person_id: uuid.UUID, target: Target) -> dict[str, str]:
    """The two headers of RFC 8058 for one reader and category."""
    url = unsubscribe_url(api_base_url, make_token(key, person_id, target))
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


async def categories_of(conn: asyncpg.Connection, person_id: uuid.UUID, target: Target) -> list[Category]:
    """The categories a link names: its one category, or those whose timing is the digest."""
    if target != "digest":
        return [target]
    rows = await conn.fetch(
        "SELECT category FROM preferences WHERE person_id = $1 AND timing = 'digest' ORDER BY category",
        person_id,
    )
    return [row["category"] for row in rows]


async def email_is_off(conn: asyncpg.Connection, person_id: uuid.UUID, target: Target) -> bool:
    """Whether no email of what the link names reaches the person now, as the plan would decide it
    (preferences.channels_for): ``auto``, also the default of a category never set, means no email
    when the person has a device. A person the notifier does not know yet has the defaults."""
    row = await conn.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM devices WHERE person_id = $1) AS has_device,
                  coalesce(jsonb_object_agg(category, channel) FILTER (WHERE category IS NOT NULL), '{}')
                    AS channels
           FROM (SELECT 1) one LEFT JOIN preferences ON person_id = $1""",
        person_id,
    )
    assert row is not None
    channels: dict[str, Channel] = row["channels"]
    return not any(
        channels_for(channels.get(category, DEFAULT_CHOICE.channel), row["has_device"])[0]
        for category in await categories_of(conn, person_id, target)
    )


async def turn_email_off(conn: asyncpg.Connection, person_id: uuid.UUID, target: Target) -> list[Category]:
    """Turn the emails the link names off (RFC 8058 one-click), keeping pushes and timing, and drop
    those emails that wait (for the digest, for their moment): each category's channel becomes
    ``without_email`` of its channel as it is when the statement runs, in one statement (a category
    never set is inserted with the default's). Idempotent. The categories turned off."""
    mapping = {channel: without_email(channel) for channel in get_args(Channel)}
    async with conn.transaction():
        await one_change_at_a_time(conn, person_id)
        if target == "digest":
            rows = await conn.fetch(
                """UPDATE preferences SET channel = $2::jsonb ->> channel, updated_at = now()
                   WHERE person_id = $1 AND timing = 'digest' RETURNING category""",
                person_id,
                mapping,
            )
        else:
            rows = await conn.fetch(
                """INSERT INTO preferences (person_id, category, channel, timing) VALUES ($1, $3, $4, $5)
                   ON CONFLICT (person_id, category) DO UPDATE
                     SET channel = $2::jsonb ->> preferences.channel, updated_at = now()
                   RETURNING category""",
                person_id,
                mapping,
                target,
                without_email(DEFAULT_CHOICE.channel),
                DEFAULT_CHOICE.timing,
            )
        categories: list[Category] = [row["category"] for row in rows]
        await message_store.drop_held(conn, person_id, categories)
    return categories
