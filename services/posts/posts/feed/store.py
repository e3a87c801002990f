"""The feed's SQL. Readers' JSON is built here, by PostgreSQL (json_build_object, json_agg): a page
leaves the database as one text value and goes out as it is, with no model built per post.
feed/domain.py holds the shapes; tests validate these documents against them."""

import uuid

import asyncpg

from posts.feed.domain import FeedCursor
from posts.publishing.attachments import ATTACHMENTS_JSON
from shared.contracts import DeliveryReport

# A member sees a post once it is published and until it is deleted (publishing owns both columns).
VISIBLE = "p.published_at IS NOT NULL AND p.deleted_at IS NULL"

# RFC 3339 in UTC with microseconds, as pydantic writes datetimes.
_UTC = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

# One post as PostView, for the viewer $1; `p` is the post, `g` its group.
_POST_FIELDS = f"""
    'post_id', p.post_id, 'group_id', p.group_id, 'group_name', g.name, 'author_id', p.author_id,
    'title', p.title, 'body', p.body, 'urgent', p.urgent,
    'photos', COALESCE((SELECT json_agg(json_build_object('photo_id', ph.photo_id, 'status', ph.status)
                                         ORDER BY ph.position)
                        FROM post_photos ph WHERE ph.post_id = p.post_id), '[]'::json),
    'attachments', {ATTACHMENTS_JSON},
    'like_count', p.like_count,
    'liked', EXISTS (SELECT 1 FROM likes l WHERE l.post_id = p.post_id AND l.person_id = $1),
    'seen', EXISTS (SELECT 1 FROM reads r WHERE r.post_id = p.post_id AND r.person_id = $1),
    'published_at', {_UTC.format("p.published_at")},
    'updated_at', {_UTC.format("p.updated_at")},
    'signup', CASE WHEN p.signup_id IS NOT NULL
                   THEN json_build_object('kind', p.signup_kind, 'id', p.signup_id) END"""  # noqa: S608 - constants, no input

# The newest `$2` visible posts of the caller's ($1) groups after the cursor ($3, $4): per group the
# newest from the index (posts_group_published), then the newest of those — never a sort of all rows.
_FEED_PAGE = f"""
    SELECT p.*
    FROM memberships m
    CROSS JOIN LATERAL (
        SELECT * FROM posts p
        WHERE p.group_id = m.group_id AND {VISIBLE}
          AND ($3::timestamptz IS NULL OR (p.published_at, p.post_id) < ($3, $4::uuid))
        ORDER BY p.published_at DESC, p.post_id DESC
        LIMIT $2
    ) p
    WHERE m.person_id = $1 AND m.active
    ORDER BY p.published_at DESC, p.post_id DESC
    LIMIT $2"""  # noqa: S608 - constants, no input

_PAGE_JSON = f"""
    SELECT COALESCE(json_agg(json_build_object({_POST_FIELDS}) ORDER BY p.published_at DESC, p.post_id DESC),
                    '[]'::json)::text AS posts,
           count(*) AS n,
           (array_agg(p.published_at ORDER BY p.published_at, p.post_id))[1] AS last_published_at,
           (array_agg(p.post_id ORDER BY p.published_at, p.post_id))[1] AS last_post_id
    FROM page p JOIN groups g ON g.group_id = p.group_id"""  # noqa: S608 - constants, no input


def _page_text(row: asyncpg.Record, limit: int) -> str:
    """``{"posts": [...], "next_cursor": ...}``; a full page points on (the next may be empty)."""
    cursor = "null"
    if row["n"] == limit:
        cursor = (
            '"'
            + FeedCursor(published_at=row["last_published_at"], post_id=row["last_post_id"]).encode()
            + '"'
        )
    posts: str = row["posts"]
    return '{"posts":' + posts + ',"next_cursor":' + cursor + "}"


async def feed_json(
    conn: asyncpg.Connection, person_id: uuid.UUID, limit: int, after: FeedCursor | None
) -> str:
    """The caller's feed page as FeedPage JSON: posts of the groups they belong to now, newest first."""
    row = await conn.fetchrow(
        f"WITH page AS ({_FEED_PAGE}) {_PAGE_JSON}",
        person_id,
        limit,
        after.published_at if after else None,
        after.post_id if after else None,
    )
    assert row is not None
    return _page_text(row, limit)


async def post_json(conn: asyncpg.Connection, post_id: uuid.UUID, person_id: uuid.UUID) -> str | None:
    """One post as PostView JSON if it is visible and the person belongs to its group now;
    otherwise None, whether it exists or not."""
    text: str | None = await conn.fetchval(
        f"""SELECT json_build_object({_POST_FIELDS})::text
            FROM posts p
            JOIN groups g ON g.group_id = p.group_id
            JOIN memberships m ON m.group_id = p.group_id AND m.person_id = $1 AND m.active
            WHERE p.post_id = $2 AND {VISIBLE}""",  # noqa: S608 - constants, no input
        person_id,
        post_id,
    )
    return text


async def role_for_post(conn: asyncpg.Connection, post_id: uuid.UUID, person_id: uuid.UUID) -> str | None:
    """The person's role in the group of a visible post, or None (no such post, or not theirs to see)."""
    role: str | None = await conn.fetchval(
        f"""SELECT m.role FROM posts p
            JOIN memberships m ON m.group_id = p.group_id AND m.person_id = $2 AND m.active
            WHERE p.post_id = $1 AND {VISIBLE}""",  # noqa: S608 - constants, no input
        post_id,
        person_id,
    )
    return role


async def mark_seen(conn: asyncpg.Connection, post_id: uuid.UUID, person_id: uuid.UUID) -> None:
    """Record the first time the person opened the post; later calls change nothing."""
    await conn.execute(
        "INSERT INTO reads (post_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", post_id, person_id
    )


async def like(conn: asyncpg.Connection, post_id: uuid.UUID, person_id: uuid.UUID) -> int:
    """Add the person's like unless it is there, keeping the post's count in the same statement.
    Returns the count. Concurrent likes of one account wait on each other's row (primary key), so
    only the one that inserted counts it; the others read the count afresh in a statement of their
    own, since the first statement's snapshot predates the like it waited for (a count of 0 beside
    ``liked: true``)."""
    count: int | None = await conn.fetchval(
        """WITH added AS (
               INSERT INTO likes (post_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING post_id
           )
           UPDATE posts SET like_count = like_count + 1 WHERE post_id IN (SELECT post_id FROM added)
           RETURNING like_count""",
        post_id,
        person_id,
    )
    return count if count is not None else await _like_count(conn, post_id)


async def unlike(conn: asyncpg.Connection, post_id: uuid.UUID, person_id: uuid.UUID) -> int:
    """Remove the person's like if it is there, keeping the count; returns the count (read afresh
    when a concurrent unlike of the same account removed it, as for like)."""
    count: int | None = await conn.fetchval(
        """WITH removed AS (
               DELETE FROM likes WHERE post_id = $1 AND person_id = $2 RETURNING post_id
           )
           UPDATE posts SET like_count = like_count - 1 WHERE post_id IN (SELECT post_id FROM removed)
           RETURNING like_count""",
        post_id,
        person_id,
    )
    return count if count is not None else await _like_count(conn, post_id)


async def _like_count(conn: asyncpg.Connection, post_id: uuid.UUID) -> int:
    count: int = await conn.fetchval("SELECT like_count FROM posts WHERE post_id = $1", post_id)
    return count


# The teacher's page of one group ($5): the feed's fields plus families, readers, likers, delivery.
_GROUP_PAGE = f"""
    SELECT p.* FROM posts p
    WHERE p.group_id = $5 AND {VISIBLE}
      AND ($3::timestamptz IS NULL OR (p.published_at, p.post_id) < ($3, $4::uuid))
    ORDER BY p.published_at DESC, p.post_id DESC
    LIMIT $2"""  # noqa: S608 - constants, no input

_GROUP_FIELDS = f"""
    'families', json_build_object(
        'seen', (SELECT count(DISTINCT c) FROM reads r
                 JOIN memberships m ON m.group_id = p.group_id AND m.person_id = r.person_id AND m.active
                 CROSS JOIN unnest(m.children) c
                 WHERE r.post_id = p.post_id),
        'total', (SELECT families FROM group_families)),
    'seen_by_count', (SELECT count(*) FROM reads r
                      JOIN memberships m ON m.group_id = p.group_id AND m.person_id = r.person_id
                                         AND m.active AND m.role = 'guardian'
                      WHERE r.post_id = p.post_id),
    'liked_by', COALESCE((SELECT json_agg(l.person_id ORDER BY l.liked_at, l.person_id)
                          FROM likes l WHERE l.post_id = p.post_id), '[]'::json),
    'delivery', (SELECT json_build_object(
                     'targeted', d.targeted, 'delivered_email', d.delivered_email,
                     'delivered_push', d.delivered_push, 'failed', d.failed, 'pending', d.pending,
                     'held', d.held, 'reported_at', {_UTC.format("d.reported_at")})
                 FROM post_deliveries d WHERE d.post_id = p.post_id)"""  # noqa: S608 - constants, no input


async def group_posts_json(
    conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID, limit: int, after: FeedCursor | None
) -> str:
    """The group's posts as GroupPostsPage JSON, newest first; families counted as the group is now."""
    row = await conn.fetchrow(
        f"""WITH page AS ({_GROUP_PAGE}),
                 group_families AS (
                     SELECT count(DISTINCT c) AS families FROM memberships m CROSS JOIN unnest(m.children) c
                     WHERE m.group_id = $5 AND m.active)
            SELECT COALESCE(json_agg(json_build_object({_POST_FIELDS}, {_GROUP_FIELDS})
                                     ORDER BY p.published_at DESC, p.post_id DESC), '[]'::json)::text AS posts,
                   count(*) AS n,
                   (array_agg(p.published_at ORDER BY p.published_at, p.post_id))[1] AS last_published_at,
                   (array_agg(p.post_id ORDER BY p.published_at, p.post_id))[1] AS last_post_id
            FROM page p JOIN groups g ON g.group_id = p.group_id""",  # noqa: S608 - constants, no input
        person_id,
        limit,
        after.published_at if after else None,
        after.post_id if after else None,
        group_id,
    )
    assert row is not None
    return _page_text(row, limit)


async def record_delivery_report(conn: asyncpg.Connection, report: DeliveryReport) -> None:
    """Keep the notifier's figures of a post unless a newer report is already kept."""
    await conn.execute(
        """INSERT INTO post_deliveries (post_id, targeted, delivered_email, delivered_push, failed, pending,
                                        held, revision, reported_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (post_id) DO UPDATE SET targeted = EXCLUDED.targeted,
             delivered_email = EXCLUDED.delivered_email, delivered_push = EXCLUDED.delivered_push,
             failed = EXCLUDED.failed, pending = EXCLUDED.pending, held = EXCLUDED.held,
             revision = EXCLUDED.revision, reported_at = EXCLUDED.reported_at
           WHERE post_deliveries.revision < EXCLUDED.revision""",
        report.post_id,
        report.targeted,
        report.delivered_email,
        report.delivered_push,
        report.failed,
        report.pending,
        report.held,
        report.revision,
        report.reported_at,
    )
