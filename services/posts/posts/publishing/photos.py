"""Which photos a post may carry (issue 9, cases 4 and 8; seed rule 6), decided when the post is
written, from posts' copy of media's photos (PhotoChanged):

- a photo media has accepted: processed at once on upload, so it is processing or ready; one rejected
  or removed (unused for a day, a tagged child erased, past retention) cannot be named;
- uploaded for the post's group, by the post's writer (an editor adds only photos they uploaded;
  photos the post already carries stay);
- in no other post, whether it appeared or waits for its send-later time (deleted posts do not count:
  media rejected their photos, or the send-later post let them go); the photos' copies are locked while a
  post takes them, so two posts at once cannot both take one;
- showing no child without photo consent (the teacher tags the children in media).

Each bad photo is named in a 422 as ``photo_ids[i]`` with its problem, before anything is written or
published. A photo rejected or removed later leaves every post that carried it (``keep_photo_copy``),
so the feed never shows a photo that cannot be shown.

A send-later post's photos are attached by media only when it appears; until then posts tells media
which photos the post names (``tell_media``, ScheduledPhotosChanged) so its clean-up of unused uploads
leaves them.
"""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from posts import children
from shared.consumer import Handlers
from shared.contracts import PhotoChanged, ScheduledPhotosChanged
from shared.envelope import Envelope
from shared.errors import ValidationFailed
from shared.ids import minted_at
from shared.outbox import publish

# The copy follows media one event hop behind (milliseconds; seconds under load): a photo uploaded just
# before the post (its time-ordered id says when) is waited for this long before it is called unknown.
# Any other unknown id is refused at once.
WAIT_FOR_COPY_SECONDS = 3.0
_JUST_UPLOADED = timedelta(seconds=15)
_CLOCK_SKEW = timedelta(seconds=2)
_POLL_SECONDS = 0.05

UNKNOWN = "no such photo: upload it first (an upload no post uses within a day is removed)"
OTHER_GROUP = "uploaded for another group: a post carries only photos uploaded for its own group"
OTHER_UPLOADER = "uploaded by someone else: add only photos you uploaded yourself"
IN_OTHER_POST = "already in another post: a photo is posted once"


async def _copies(
    conn: asyncpg.Connection, photo_ids: Sequence[uuid.UUID], post_id: uuid.UUID | None
) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch(
        """SELECT c.photo_id, c.group_id, c.uploader_id, c.status, c.reason, c.without_consent,
                  EXISTS (SELECT 1 FROM post_photos pp JOIN posts p USING (post_id)
                          WHERE pp.photo_id = c.photo_id AND p.deleted_at IS NULL
                            AND pp.post_id IS DISTINCT FROM $2) AS in_other_post
           FROM photo_copies c WHERE c.photo_id = ANY($1::uuid[])""",
        list(photo_ids),
        post_id,
    )
    return {r["photo_id"]: r for r in rows}


async def check(
    conn: asyncpg.Connection,
    photo_ids: Sequence[uuid.UUID],
    group_id: uuid.UUID,
    writer_id: uuid.UUID,
    post_id: uuid.UUID | None = None,
) -> None:
    """Refuse (422, naming each ``photo_ids[i]``) the photos the writer may not put in this post of
    ``group_id``; ``post_id`` when editing: the photos it carries already are kept as they are."""
    if not photo_ids:
        return
    kept: set[uuid.UUID] = set()
    if post_id is not None:
        kept = {
            r["photo_id"]
            for r in await conn.fetch("SELECT photo_id FROM post_photos WHERE post_id = $1", post_id)
        }
    wanted = [p for p in photo_ids if p not in kept]
    await _lock(conn, wanted)
    copies = await _copies(conn, wanted, post_id)
    waited = 0.0
    while _just_uploaded([p for p in wanted if p not in copies]) and waited < WAIT_FOR_COPY_SECONDS:
        await asyncio.sleep(_POLL_SECONDS)
        waited += _POLL_SECONDS
        await _lock(conn, wanted)
        copies = await _copies(conn, wanted, post_id)
    blocked = sorted({c for row in copies.values() for c in row["without_consent"]})
    names = await children.names(conn, blocked) if blocked else {}
    problems = []
    for i, photo_id in enumerate(photo_ids):
        if photo_id in kept:
            continue
        problem = _problem(copies.get(photo_id), group_id, writer_id, names)
        if problem is not None:
            problems.append({"field": f"photo_ids[{i}]", "problem": problem})
    if problems:
        count = "a photo" if len(problems) == 1 else f"{len(problems)} photos"
        raise ValidationFailed(f"{count} cannot be put in this post; nothing was published", problems)


async def _lock(conn: asyncpg.Connection, photo_ids: Sequence[uuid.UUID]) -> None:
    """Lock the copies (in one order) until the post's transaction ends, before reading which posts name
    them: a second post taking one at the same moment waits, then (in a statement of its own, after the
    first committed) sees it in the first post."""
    await conn.execute(
        "SELECT 1 FROM photo_copies WHERE photo_id = ANY($1::uuid[]) ORDER BY photo_id FOR UPDATE",
        sorted(set(photo_ids)),
    )


async def tell_media(conn: asyncpg.Connection, post_id: uuid.UUID) -> None:
    """In the caller's transaction, after a send-later post was written, had its photos edited or was
    deleted (its row written or locked already, so revisions follow the commits): tell media the photos it
    names from now on, none once it is deleted or appeared, with the post's next revision."""
    row = await conn.fetchrow(
        """UPDATE posts p SET photos_revision = photos_revision + 1 WHERE post_id = $1
           RETURNING p.group_id, p.school_id, p.photos_revision,
                     CASE WHEN p.deleted_at IS NULL AND p.published_at IS NULL
                          THEN ARRAY(SELECT ph.photo_id FROM post_photos ph WHERE ph.post_id = p.post_id
                                     ORDER BY ph.position)
                          ELSE '{}'::uuid[] END AS photo_ids""",
        post_id,
    )
    if row is None:
        return
    event = ScheduledPhotosChanged(
        post_id=post_id,
        group_id=row["group_id"],
        photo_ids=list(row["photo_ids"]),
        revision=row["photos_revision"],
    )
    await publish(conn, event, row["school_id"])


def _just_uploaded(photo_ids: Sequence[uuid.UUID]) -> bool:
    """Whether any of these ids was made by media moments ago (see shared.ids)."""
    now = datetime.now(UTC)
    for photo_id in photo_ids:
        at = minted_at(photo_id)
        if at is not None and now - _JUST_UPLOADED <= at <= now + _CLOCK_SKEW:
            return True
    return False


def _problem(
    copy: asyncpg.Record | None,
    group_id: uuid.UUID,
    writer_id: uuid.UUID,
    names: dict[uuid.UUID, tuple[str, str]],
) -> str | None:
    if copy is None:
        return UNKNOWN
    if copy["group_id"] != group_id:
        return OTHER_GROUP
    if copy["uploader_id"] != writer_id:
        return OTHER_UPLOADER
    if copy["status"] == "removed":
        return f"no longer available: {copy['reason'] or 'removed'}"
    if copy["status"] == "rejected":
        return f"cannot be shown: {copy['reason'] or 'the photo could not be processed'}"
    if copy["in_other_post"]:
        return IN_OTHER_POST
    if copy["without_consent"]:
        shown = [" ".join(names[c]) for c in copy["without_consent"] if c in names]
        who = ", ".join(shown) if shown and len(shown) == len(copy["without_consent"]) else "a child"
        return (
            f"shows {who} without photo consent: untag the child in the photo (if they are not in it) "
            "or choose another photo"
        )
    return None


async def keep_copy(conn: asyncpg.Connection, event: PhotoChanged) -> bool:
    """Store the photo's state unless the copy holds a newer revision; True when it was stored."""
    stored = await conn.fetchval(
        """INSERT INTO photo_copies (photo_id, school_id, group_id, uploader_id, status, reason, without_consent, revision)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (photo_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,
             without_consent = EXCLUDED.without_consent, revision = EXCLUDED.revision
           WHERE photo_copies.revision < EXCLUDED.revision
           RETURNING true""",
        event.photo_id,
        event.school_id,
        event.group_id,
        event.uploader_id,
        event.status,
        event.reason,
        event.without_consent,
        event.revision,
    )
    return bool(stored)


async def leave_posts(conn: asyncpg.Connection, photo_ids: Sequence[uuid.UUID]) -> None:
    """Photos that cannot be shown (rejected, removed, purged) leave every post that carried them."""
    await conn.execute("DELETE FROM post_photos WHERE photo_id = ANY($1::uuid[])", list(photo_ids))


async def leave_post(conn: asyncpg.Connection, post_id: uuid.UUID, photo_id: uuid.UUID) -> None:
    """A photo media would not attach to this post (PhotoRejected) leaves it; other posts keep theirs."""
    await conn.execute("DELETE FROM post_photos WHERE post_id = $1 AND photo_id = $2", post_id, photo_id)


async def removed(conn: asyncpg.Connection, photo_ids: Sequence[uuid.UUID], reason: str) -> None:
    """Photos media deleted for good outside PhotoChanged (retention's PhotosPurged): the copy says so."""
    await conn.execute(
        "UPDATE photo_copies SET status = 'removed', reason = $2 WHERE photo_id = ANY($1::uuid[])",
        list(photo_ids),
        reason,
    )


def keep_photo_copy(handlers: Handlers) -> None:
    """Register the PhotoChanged handler on posts' Handlers."""

    @handlers.on(PhotoChanged)
    async def photo_changed(conn: asyncpg.Connection, _env: Envelope, event: PhotoChanged) -> None:
        if await keep_copy(conn, event) and event.status in ("rejected", "removed"):
            await leave_posts(conn, [event.photo_id])
