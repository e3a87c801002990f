"""Photos reserved by posts waiting for their send-later time (issue 9 / issue 6).

Media processes a photo at upload and deletes uploads no post used within a day (media.cleanup), but it
attaches a post's photos only when the post appears (PostPublished), up to 20 hours after it was written.
So posts tells, for each send-later post, the whole list of photos it names on every change
(ScheduledPhotosChanged, with a growing revision per post): those photos are reserved, and the clean-up
leaves them. When the post appears its photos are attached as any post's and the reservation ends. A
photo let go (taken out of the post, the post deleted) is an unused upload again, with a day from then:
a teacher who deletes a send-later post to write it anew keeps the photo for the new one.

Words of one post handled out of order (consumers run concurrently; a retried one comes late) change
nothing once a newer one was handled, nor once the post appeared. Reservations are rows per post, so two
posts' words (one let the photo go, the next took it) cannot clear each other's.
"""

import uuid
from collections.abc import Sequence

import asyncpg

from shared.contracts import ScheduledPhotosChanged

# Rows of posts that reserve nothing any more are kept this long to recognise a late, older word (a send-
# later post appears at most 20 hours after it is written), then pruned by the clean-up.
KEEP_WORD_DAYS = 7


async def follow(conn: asyncpg.Connection, event: ScheduledPhotosChanged) -> list[uuid.UUID] | None:
    """Make the post's reservations ``event.photo_ids`` (those of them that are still unused uploads of
    the post's group: not deleted, not rejected, in no post), unless a newer revision was handled or the
    post appeared already. Returns the photos reserved now, or None when the word changed nothing."""
    newer = await conn.fetchval(
        """INSERT INTO scheduled_posts (post_id, revision) VALUES ($1, $2)
           ON CONFLICT (post_id) DO UPDATE SET revision = EXCLUDED.revision, changed_at = now()
           WHERE scheduled_posts.revision < EXCLUDED.revision AND NOT scheduled_posts.appeared
           RETURNING true""",
        event.post_id,
        event.revision,
    )
    if not newer:
        return None
    # Locked in one order (the clean-up deletes them FOR UPDATE SKIP LOCKED): one it is deleting now is
    # waited for and then not found.
    kept: list[uuid.UUID] = [
        r["photo_id"]
        for r in await conn.fetch(
            """SELECT photo_id FROM photos
               WHERE photo_id = ANY($1::uuid[]) AND group_id = $2 AND post_id IS NULL AND status <> 'rejected'
               ORDER BY photo_id FOR UPDATE""",
            event.photo_ids,
            event.group_id,
        )
    ]
    before = await _reserved_by(conn, event.post_id)
    await conn.execute(
        "DELETE FROM photo_reservations WHERE post_id = $1 AND photo_id <> ALL($2::uuid[])",
        event.post_id,
        kept,
    )
    await conn.executemany(
        "INSERT INTO photo_reservations (photo_id, post_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(photo_id, event.post_id) for photo_id in kept],
    )
    await _mark(conn, sorted({*before, *kept}))
    return kept


async def appeared(conn: asyncpg.Connection, post_id: uuid.UUID, photo_ids: Sequence[uuid.UUID]) -> None:
    """The post appeared (PostPublished, after its photos were attached): its reservations end, and any
    word about it still to come is older. A post without photos reserves nothing and leaves no row."""
    if photo_ids:
        await conn.execute(
            """INSERT INTO scheduled_posts (post_id, revision, appeared) VALUES ($1, 0, true)
               ON CONFLICT (post_id) DO UPDATE SET appeared = true, changed_at = now()""",
            post_id,
        )
    released = await conn.fetch(
        "DELETE FROM photo_reservations WHERE post_id = $1 RETURNING photo_id", post_id
    )
    await _mark(conn, sorted(r["photo_id"] for r in released))


async def prune(conn: asyncpg.Connection) -> None:
    """Forget the words of posts that reserve nothing and did not change for KEEP_WORD_DAYS."""
    await conn.execute(
        """DELETE FROM scheduled_posts s WHERE s.changed_at < now() - $1 * interval '1 day'
           AND NOT EXISTS (SELECT 1 FROM photo_reservations r WHERE r.post_id = s.post_id)""",
        KEEP_WORD_DAYS,
    )


async def _reserved_by(conn: asyncpg.Connection, post_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.fetch("SELECT photo_id FROM photo_reservations WHERE post_id = $1", post_id)
    return [r["photo_id"] for r in rows]


async def _mark(conn: asyncpg.Connection, photo_ids: list[uuid.UUID]) -> None:
    """Keep photos.reserved in step with the rows (the clean-up reads it on the locked row); one whose
    last reservation went is released now (a day from now before the clean-up takes it)."""
    if not photo_ids:
        return
    await conn.execute(
        """UPDATE photos p SET reserved = r.reserved,
                  released_at = CASE WHEN p.reserved AND NOT r.reserved THEN now() ELSE p.released_at END
           FROM (SELECT u.photo_id, EXISTS (SELECT 1 FROM photo_reservations pr WHERE pr.photo_id = u.photo_id)
                                    AS reserved
                 FROM unnest($1::uuid[]) AS u(photo_id)) r
           WHERE p.photo_id = r.photo_id AND p.reserved IS DISTINCT FROM r.reserved""",
        photo_ids,
    )
