"""The sign-up reference on posts (seed rule 7): a post in a group's feed that announces a sign-up
(a conference schedule, a helper-parent list) carries ``signup_kind`` and ``signup_id``, and the feed
shows them as ``signup`` so that clients open the sign-up from the post.

Such posts are the platform's announcement of a sign-up, not a teacher's message: they are published
at once and are not counted against the group's posts per day (seed rule 5, ``post_days``). Whether
parents are told through PostPublished or the sign-up's own event is the caller's choice: conferences
publish ConferenceOpened only (the notifier says when booking opens for each family), helper lists
publish PostPublished.
"""

import uuid
from typing import Literal

import asyncpg
from pydantic import BaseModel, Field

SignupKind = Literal["conference", "helper_list"]


class SignupRef(BaseModel):
    """What a post announces: open it at ``/conferences/{id}`` (conference) or the helper list's route."""

    kind: SignupKind
    id: uuid.UUID = Field(description="The schedule's or list's id.")


async def announce(
    conn: asyncpg.Connection,
    *,
    kind: SignupKind,
    signup_id: uuid.UUID,
    group_ids: list[uuid.UUID],
    author_id: uuid.UUID,
    title: str,
    body: str,
) -> list[uuid.UUID]:
    """One published post per group pointing at the sign-up, in the caller's transaction; the post
    ids. ``local_day`` is the school's day (its time zone, Europe/Amsterdam until the copy has one)
    but nothing is counted in ``post_days``."""
    rows = await conn.fetch(
        """INSERT INTO posts (post_id, group_id, school_id, author_id, title, body, published_at, local_day,
                              signup_kind, signup_id)
           SELECT gen_random_uuid(), g.group_id, g.school_id, $2, $3, $4, now(),
                  (now() AT TIME ZONE COALESCE(s.time_zone, 'Europe/Amsterdam'))::date, $5, $6
           FROM groups g LEFT JOIN schools s ON s.school_id = g.school_id
           WHERE g.group_id = ANY($1::uuid[])
           RETURNING post_id""",
        group_ids,
        author_id,
        title,
        body,
        kind,
        signup_id,
    )
    return [r["post_id"] for r in rows]


async def withdraw(conn: asyncpg.Connection, signup_id: uuid.UUID) -> None:
    """The sign-up's posts disappear from the feed (deleted, as publishing deletes a post)."""
    await conn.execute(
        "UPDATE posts SET deleted_at = now() WHERE signup_id = $1 AND deleted_at IS NULL", signup_id
    )
