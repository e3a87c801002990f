"""Posts' SQL."""

import uuid
from typing import Any

import asyncpg

from posts.domain import FeedCursor, PhotoRef, PostView


async def group(conn: asyncpg.Connection, group_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT group_id, school_id, name FROM groups WHERE group_id = $1", group_id)


async def insert_post(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    group_id: uuid.UUID,
    school_id: uuid.UUID,
    author_id: uuid.UUID,
    body: str,
    photo_ids: list[uuid.UUID],
) -> None:
    await conn.execute(
        "INSERT INTO posts (post_id, group_id, school_id, author_id, body) VALUES ($1, $2, $3, $4, $5)",
        post_id,
        group_id,
        school_id,
        author_id,
        body,
    )
    await conn.executemany(
        "INSERT INTO post_photos (post_id, photo_id, position) VALUES ($1, $2, $3)",
        [(post_id, photo_id, i) for i, photo_id in enumerate(photo_ids)],
    )


def _view(row: asyncpg.Record) -> PostView:
    photos: list[dict[str, Any]] = row["photos"]
    return PostView(
        post_id=row["post_id"],
        group_id=row["group_id"],
        group_name=row["group_name"],
        author_id=row["author_id"],
        body=row["body"],
        photos=[PhotoRef.model_validate(p) for p in photos],
        created_at=row["created_at"],
    )


async def visible_post(conn: asyncpg.Connection, post_id: uuid.UUID, person_id: uuid.UUID) -> PostView | None:
    """The post if the person belongs to its group now; otherwise nothing, whether it exists or not."""
    row = await conn.fetchrow(
        """SELECT v.* FROM post_views v
           JOIN memberships m ON m.group_id = v.group_id AND m.person_id = $2 AND m.active
           WHERE v.post_id = $1""",
        post_id,
        person_id,
    )
    return _view(row) if row else None


async def feed(
    conn: asyncpg.Connection, person_id: uuid.UUID, limit: int, after: FeedCursor | None
) -> list[PostView]:
    # Per group the newest `limit` posts from the index, then the newest `limit` of those:
    # far cheaper than `group_id = ANY(...) ORDER BY` over every row of the groups.
    rows = await conn.fetch(
        """SELECT v.*
            FROM memberships m
            CROSS JOIN LATERAL (
                SELECT post_id FROM posts
                WHERE posts.group_id = m.group_id
                  AND ($3::timestamptz IS NULL OR (posts.created_at, posts.post_id) < ($3, $4::uuid))
                ORDER BY created_at DESC, post_id DESC LIMIT $2
            ) p
            JOIN post_views v ON v.post_id = p.post_id
            WHERE m.person_id = $1 AND m.active
            ORDER BY v.created_at DESC, v.post_id DESC
            LIMIT $2""",
        person_id,
        limit,
        after.created_at if after else None,
        after.post_id if after else None,
    )
    return [_view(r) for r in rows]


async def upsert_group(
    conn: asyncpg.Connection, group_id: uuid.UUID, school_id: uuid.UUID, name: str, year: str, revision: int
) -> None:
    """Keep a group's name and school year, unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO groups (group_id, school_id, name, school_year, revision) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (group_id) DO UPDATE SET name = EXCLUDED.name,
             school_year = EXCLUDED.school_year, revision = EXCLUDED.revision
           WHERE groups.revision < EXCLUDED.revision""",
        group_id,
        school_id,
        name,
        year,
        revision,
    )


async def set_photo_status(
    conn: asyncpg.Connection, post_id: uuid.UUID, photo_id: uuid.UUID, status: str
) -> None:
    # By post too: a photo id can be named in more than one post, and only one of them owns it.
    await conn.execute(
        "UPDATE post_photos SET status = $3 WHERE post_id = $1 AND photo_id = $2", post_id, photo_id, status
    )
