"""Publishing's SQL: posts as written, the posting policy's day counts, and the copies of schools and
staff it decides with."""

import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from posts.publishing.attachments import ATTACHMENTS_JSON, AttachmentRef
from posts.publishing.domain import DEFAULT_MAX_POSTS_PER_DAY, DEFAULT_TIME_ZONE, PhotoRef, WrittenPost


async def now(conn: asyncpg.Connection) -> datetime:
    """The database's time of the transaction: one clock for every replica."""
    moment: datetime = await conn.fetchval("SELECT now()")
    return moment


async def writer(
    conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """In one round trip, what writing to a group needs: the group, the person's role in it (or NULL),
    whether they administer its school, the school's time zone and posts per day (identity's defaults
    until the copy has them), and the transaction's time. None when there is no such group."""
    return await conn.fetchrow(
        """SELECT g.group_id, g.school_id, g.name,
                  (SELECT m.role FROM memberships m
                   WHERE m.group_id = g.group_id AND m.person_id = $2 AND m.active) AS role,
                  EXISTS (SELECT 1 FROM staff st WHERE st.school_id = g.school_id AND st.person_id = $2
                                                   AND 'admin' = ANY(st.roles)) AS admin,
                  COALESCE(s.time_zone, $3) AS time_zone,
                  COALESCE(s.max_posts_per_day, $4) AS max_posts_per_day,
                  now() AS now
           FROM groups g LEFT JOIN schools s ON s.school_id = g.school_id
           WHERE g.group_id = $1""",
        group_id,
        person_id,
        DEFAULT_TIME_ZONE,
        DEFAULT_MAX_POSTS_PER_DAY,
    )


async def policy(conn: asyncpg.Connection, school_id: uuid.UUID) -> tuple[str, int]:
    """The school's time zone and posts per group per day; identity's defaults until the copy has them."""
    row = await conn.fetchrow(
        "SELECT time_zone, max_posts_per_day FROM schools WHERE school_id = $1", school_id
    )
    if row is None:
        return DEFAULT_TIME_ZONE, DEFAULT_MAX_POSTS_PER_DAY
    return row["time_zone"], row["max_posts_per_day"]


async def count_post(conn: asyncpg.Connection, group_id: uuid.UUID, day: date, at_most: int) -> bool:
    """Count one more post of the group on the day, if fewer than ``at_most`` are counted; whether it was.
    Concurrent writers of one group wait for each other on the day's row, and each sees the others'
    committed count (ON CONFLICT re-reads the row it waited for), so at most ``at_most`` succeed."""
    counted = await conn.fetchval(
        """INSERT INTO post_days (group_id, local_day, posts) SELECT $1, $2, 1 WHERE $3 >= 1
           ON CONFLICT (group_id, local_day) DO UPDATE SET posts = post_days.posts + 1
           WHERE post_days.posts < $3
           RETURNING true""",
        group_id,
        day,
        at_most,
    )
    return bool(counted)


async def uncount_post(conn: asyncpg.Connection, group_id: uuid.UUID, day: date) -> None:
    await conn.execute(
        "UPDATE post_days SET posts = posts - 1 WHERE group_id = $1 AND local_day = $2 AND posts > 0",
        group_id,
        day,
    )


async def post_of_day(conn: asyncpg.Connection, group_id: uuid.UUID, day: date) -> uuid.UUID | None:
    """The group's latest post (not an announcement, not deleted) counted for the day."""
    post_id: uuid.UUID | None = await conn.fetchval(
        """SELECT post_id FROM posts
           WHERE group_id = $1 AND local_day = $2 AND announcement_id IS NULL AND signup_id IS NULL
             AND deleted_at IS NULL
           ORDER BY created_at DESC LIMIT 1""",
        group_id,
        day,
    )
    return post_id


async def insert_post(
    conn: asyncpg.Connection,
    post_id: uuid.UUID,
    group: asyncpg.Record,
    author_id: uuid.UUID,
    title: str,
    body: str,
    photo_ids: list[uuid.UUID],
    *,
    urgent: bool,
    publish_at: datetime | None,
    day: date,
    announcement_id: uuid.UUID | None = None,
) -> asyncpg.Record:
    """A post, published now (``publish_at`` None) or waiting for its send-later time; its
    created_at and published_at."""
    stamps = await conn.fetchrow(
        """INSERT INTO posts (post_id, group_id, school_id, author_id, title, body, urgent, announcement_id,
                              publish_at, published_at, local_day)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9::timestamptz IS NULL THEN now() END, $10)
           RETURNING created_at, published_at""",
        post_id,
        group["group_id"],
        group["school_id"],
        author_id,
        title,
        body,
        urgent,
        announcement_id,
        publish_at,
        day,
    )
    if photo_ids:
        await conn.executemany(
            "INSERT INTO post_photos (post_id, photo_id, position) VALUES ($1, $2, $3)",
            [(post_id, photo_id, i) for i, photo_id in enumerate(photo_ids)],
        )
    assert stamps is not None
    return stamps


_WRITTEN = f"""
    SELECT p.post_id, p.group_id, g.name AS group_name, p.school_id, p.author_id, p.title, p.body, p.urgent,
           p.announcement_id, p.created_at, p.publish_at, p.published_at, p.updated_at, p.local_day,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('photo_id', ph.photo_id, 'status', ph.status)
                                      ORDER BY ph.position)
                     FROM post_photos ph WHERE ph.post_id = p.post_id), '[]'::jsonb) AS photos,
           ({ATTACHMENTS_JSON})::jsonb AS attachments
    FROM posts p JOIN groups g USING (group_id)
    WHERE p.deleted_at IS NULL"""  # noqa: S608 - constants, no input


def written_view(row: asyncpg.Record) -> WrittenPost:
    photos: list[dict[str, Any]] = row["photos"]
    return WrittenPost(
        post_id=row["post_id"],
        group_id=row["group_id"],
        group_name=row["group_name"],
        author_id=row["author_id"],
        title=row["title"],
        body=row["body"],
        urgent=row["urgent"],
        announcement_id=row["announcement_id"],
        photos=[PhotoRef.model_validate(p) for p in photos],
        attachments=[AttachmentRef.model_validate(a) for a in row["attachments"]],
        status="published" if row["published_at"] is not None else "scheduled",
        created_at=row["created_at"],
        publish_at=row["publish_at"],
        published_at=row["published_at"],
        updated_at=row["updated_at"],
    )


async def written_post(
    conn: asyncpg.Connection, post_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record | None:
    """A post that is not deleted, scheduled or published, with its photos; ``lock`` holds it for an edit."""
    return await conn.fetchrow(
        _WRITTEN + " AND p.post_id = $1" + (" FOR UPDATE OF p" if lock else ""), post_id
    )


async def scheduled_posts(conn: asyncpg.Connection, group_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        _WRITTEN + " AND p.group_id = $1 AND p.published_at IS NULL ORDER BY p.publish_at, p.post_id",
        group_id,
    )
    return rows


async def update_post(conn: asyncpg.Connection, post_id: uuid.UUID, title: str, body: str) -> None:
    await conn.execute(
        "UPDATE posts SET title = $2, body = $3, updated_at = now() WHERE post_id = $1", post_id, title, body
    )


async def replace_photos(conn: asyncpg.Connection, post_id: uuid.UUID, photo_ids: list[uuid.UUID]) -> None:
    """The post's photos become these, in this order; photos it kept keep their processing state."""
    await conn.execute(
        "DELETE FROM post_photos WHERE post_id = $1 AND photo_id <> ALL($2::uuid[])", post_id, photo_ids
    )
    await conn.executemany(
        """INSERT INTO post_photos (post_id, photo_id, position) VALUES ($1, $2, $3)
           ON CONFLICT (post_id, photo_id) DO UPDATE SET position = EXCLUDED.position""",
        [(post_id, photo_id, i) for i, photo_id in enumerate(photo_ids)],
    )


async def mark_deleted(conn: asyncpg.Connection, post_id: uuid.UUID) -> None:
    await conn.execute("UPDATE posts SET deleted_at = now() WHERE post_id = $1", post_id)


async def publish_due(conn: asyncpg.Connection, at: datetime | None, limit: int) -> list[asyncpg.Record]:
    """Publish (in the caller's transaction) the scheduled posts whose time has come by ``at`` (default:
    the database's now), returning them with their photo ids. A post locked by an edit is taken next round."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE posts p SET published_at = COALESCE($1::timestamptz, now())
           WHERE p.post_id IN (
               SELECT post_id FROM posts
               WHERE published_at IS NULL AND deleted_at IS NULL AND publish_at <= COALESCE($1::timestamptz, now())
               ORDER BY publish_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING p.post_id, p.group_id, p.school_id, p.author_id, p.title, p.body, p.urgent,
                     p.announcement_id, p.published_at,
                     ARRAY(SELECT photo_id FROM post_photos ph WHERE ph.post_id = p.post_id
                           ORDER BY ph.position) AS photo_ids""",
        at,
        limit,
    )
    return rows


async def school_groups(
    conn: asyncpg.Connection, school_id: uuid.UUID, group_ids: list[uuid.UUID] | None
) -> list[asyncpg.Record]:
    """The school's groups among ``group_ids``; without them, the groups of the current year: identity
    derives memberships only there, so those that have a member now."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT g.group_id, g.school_id, g.name FROM groups g
           WHERE g.school_id = $1
             AND CASE WHEN $2::uuid[] IS NULL
                      THEN EXISTS (SELECT 1 FROM memberships m WHERE m.group_id = g.group_id AND m.active)
                      ELSE g.group_id = ANY($2::uuid[]) END
           ORDER BY g.name, g.group_id""",
        school_id,
        group_ids,
    )
    return rows


async def upsert_school(
    conn: asyncpg.Connection,
    school_id: uuid.UUID,
    time_zone: str,
    max_posts_per_day: int,
    min_posts_per_week: int,
    revision: int,
) -> None:
    """Keep a school's time zone and posting policy, unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO schools (school_id, time_zone, max_posts_per_day, min_posts_per_week, revision)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (school_id) DO UPDATE SET time_zone = EXCLUDED.time_zone,
             max_posts_per_day = EXCLUDED.max_posts_per_day, min_posts_per_week = EXCLUDED.min_posts_per_week,
             revision = EXCLUDED.revision
           WHERE schools.revision < EXCLUDED.revision""",
        school_id,
        time_zone,
        max_posts_per_day,
        min_posts_per_week,
        revision,
    )
