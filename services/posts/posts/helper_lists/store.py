"""Helper lists' SQL: lists and items, sign-ups and waiting lists, and the account names teachers see.

Exactness under concurrency: every change to an item's sign-ups (sign up, withdraw, promote, a new
capacity) first locks the item's row (``lock_item``) and only then counts, in a later statement, so it
sees what the previous holder committed (READ COMMITTED takes a snapshot per statement). Parents'
changes hold the list's row FOR SHARE, a teacher closing it takes it FOR UPDATE: nobody signs up
past a close that committed first."""

import uuid
from datetime import date, datetime
from typing import Literal

import asyncpg

from posts.publishing.domain import DEFAULT_TIME_ZONE


async def group_for(
    conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID
) -> asyncpg.Record | None:
    """The group (with its school year's last day, when known) with the person's role in it now, the
    school's time zone and the transaction's time;
    None when there is no such group or the person does not belong to it."""
    return await conn.fetchrow(
        """SELECT g.group_id, g.school_id, g.name, g.school_year, g.year_ends_on, m.role,
                  COALESCE(s.time_zone, $3) AS time_zone, now() AS now
           FROM groups g
           JOIN memberships m ON m.group_id = g.group_id AND m.person_id = $2 AND m.active
           LEFT JOIN schools s ON s.school_id = g.school_id
           WHERE g.group_id = $1""",
        group_id,
        person_id,
        DEFAULT_TIME_ZONE,
    )


# A list with its group's name, the viewer's ($2) role in the group now, the school's time zone ($3 until
# the copy has one) and the transaction's time; only lists of groups the viewer belongs to now.
_LIST = """
    SELECT l.*, g.name AS group_name, g.year_ends_on, m.role, COALESCE(s.time_zone, $3) AS time_zone,
           now() AS now
    FROM helper_lists l
    JOIN groups g ON g.group_id = l.group_id
    JOIN memberships m ON m.group_id = l.group_id AND m.person_id = $2 AND m.active
    LEFT JOIN schools s ON s.school_id = l.school_id"""

_LOCKS = {None: "", "share": " FOR SHARE OF l", "update": " FOR UPDATE OF l"}


async def list_for(
    conn: asyncpg.Connection,
    list_id: uuid.UUID,
    person_id: uuid.UUID,
    lock: Literal["share", "update"] | None = None,
) -> asyncpg.Record | None:
    """The list (as _LIST reads it); None when there is no such list or it is not the person's to see.
    ``lock``: "share" (a parent's change, a teacher's edit of an item) or "update" (closing it) on its row."""
    return await conn.fetchrow(
        _LIST + " WHERE l.list_id = $1" + _LOCKS[lock],
        list_id,
        person_id,
        DEFAULT_TIME_ZONE,
    )


async def insert_list(
    conn: asyncpg.Connection,
    list_id: uuid.UUID,
    group: asyncpg.Record,
    author_id: uuid.UUID,
    title: str,
    description: str,
    activity_on: date | None,
    deadline: datetime,
    items: list[tuple[str, int]],
) -> None:
    """A list and its items (title, capacity) in the given order."""
    await conn.execute(
        """INSERT INTO helper_lists (list_id, group_id, school_id, school_year, author_id, title, description,
                                     activity_on, deadline)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        list_id,
        group["group_id"],
        group["school_id"],
        group["school_year"],
        author_id,
        title,
        description,
        activity_on,
        deadline,
    )
    await conn.executemany(
        "INSERT INTO helper_items (item_id, list_id, position, title, capacity) VALUES ($1, $2, $3, $4, $5)",
        [(uuid.uuid4(), list_id, i, title, capacity) for i, (title, capacity) in enumerate(items)],
    )


async def group_lists(
    conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The group's lists (as _LIST reads them), newest first; none unless the person belongs to it."""
    rows: list[asyncpg.Record] = await conn.fetch(
        _LIST + " WHERE l.group_id = $1 ORDER BY l.created_at DESC, l.list_id DESC",
        group_id,
        person_id,
        DEFAULT_TIME_ZONE,
    )
    return rows


async def item_figures(
    conn: asyncpg.Connection, list_ids: list[uuid.UUID], person_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Per item of the lists, in order: capacity, places taken, parents waiting, the person's own state
    and their place in line (1 = first)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT i.list_id, i.item_id, i.title, i.capacity,
                  (SELECT count(*) FROM helper_signups s WHERE s.item_id = i.item_id
                                                           AND s.status = 'signed_up') AS signed_up,
                  (SELECT count(*) FROM helper_signups s WHERE s.item_id = i.item_id
                                                           AND s.status = 'waiting') AS waiting,
                  me.status AS mine,
                  CASE WHEN me.status = 'waiting' THEN
                      (SELECT count(*) FROM helper_signups s
                       WHERE s.item_id = i.item_id AND s.status = 'waiting' AND s.queued <= me.queued)
                  END AS place_in_line
           FROM helper_items i
           LEFT JOIN helper_signups me ON me.item_id = i.item_id AND me.person_id = $2
           WHERE i.list_id = ANY($1::uuid[])
           ORDER BY i.list_id, i.position""",
        list_ids,
        person_id,
    )
    return rows


async def lock_item(
    conn: asyncpg.Connection, list_id: uuid.UUID, item_id: uuid.UUID
) -> asyncpg.Record | None:
    """The item of the list, its row locked until the transaction ends; None when the list has no such item."""
    return await conn.fetchrow(
        "SELECT item_id, title, capacity FROM helper_items WHERE item_id = $1 AND list_id = $2 FOR UPDATE",
        item_id,
        list_id,
    )


async def places_taken(conn: asyncpg.Connection, item_id: uuid.UUID) -> int:
    """Parents holding a place on the item; call with the item locked (lock_item), in a later statement."""
    taken: int = await conn.fetchval(
        "SELECT count(*) FROM helper_signups WHERE item_id = $1 AND status = 'signed_up'", item_id
    )
    return taken


async def signup_of(conn: asyncpg.Connection, item_id: uuid.UUID, person_id: uuid.UUID) -> str | None:
    state: str | None = await conn.fetchval(
        "SELECT status FROM helper_signups WHERE item_id = $1 AND person_id = $2", item_id, person_id
    )
    return state


async def add_signup(
    conn: asyncpg.Connection, list_id: uuid.UUID, item_id: uuid.UUID, person_id: uuid.UUID, state: str
) -> None:
    """The person's sign-up (a place, or the end of the waiting list); with the item locked."""
    await conn.execute(
        """INSERT INTO helper_signups (signup_id, item_id, list_id, person_id, status)
           VALUES ($1, $2, $3, $4, $5)""",
        uuid.uuid4(),
        item_id,
        list_id,
        person_id,
        state,
    )


async def remove_signup(conn: asyncpg.Connection, item_id: uuid.UUID, person_id: uuid.UUID) -> str | None:
    """Withdraw the person from the item; the state they had, or None when they had none."""
    state: str | None = await conn.fetchval(
        "DELETE FROM helper_signups WHERE item_id = $1 AND person_id = $2 RETURNING status",
        item_id,
        person_id,
    )
    return state


async def promote(
    conn: asyncpg.Connection, group_id: uuid.UUID, item_id: uuid.UUID, capacity: int
) -> list[asyncpg.Record]:
    """Give the free places of the item to the first on its waiting list who are still parents in the
    group, in order (one who stopped being one is passed over: ``left_behind`` takes them off with the
    membership copy's change, and a list of a year gone by keeps them); those promoted (signup_id,
    person_id). With the item locked: each waiting row moves up once, so one promotion is one row
    returned here, once."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE helper_signups SET status = 'signed_up', promoted_at = now()
           WHERE signup_id IN (
               SELECT s.signup_id FROM helper_signups s
               JOIN memberships m ON m.group_id = $1 AND m.person_id = s.person_id AND m.active
                                 AND m.role = 'guardian'
               WHERE s.item_id = $2 AND s.status = 'waiting'
               ORDER BY s.queued
               LIMIT GREATEST(0, $3 - (SELECT count(*) FROM helper_signups
                                       WHERE item_id = $2 AND status = 'signed_up')))
           RETURNING signup_id, person_id""",
        group_id,
        item_id,
        capacity,
    )
    return rows


async def other_item_titles(conn: asyncpg.Connection, list_id: uuid.UUID, item_id: uuid.UUID) -> list[str]:
    """The titles of the list's items other than ``item_id``."""
    rows = await conn.fetch(
        "SELECT title FROM helper_items WHERE list_id = $1 AND item_id <> $2", list_id, item_id
    )
    return [r["title"] for r in rows]


async def update_item(conn: asyncpg.Connection, item_id: uuid.UUID, title: str, capacity: int) -> None:
    await conn.execute(
        "UPDATE helper_items SET title = $2, capacity = $3 WHERE item_id = $1", item_id, title, capacity
    )


async def update_list(
    conn: asyncpg.Connection,
    list_id: uuid.UUID,
    title: str,
    description: str,
    activity_on: date | None,
    deadline: datetime,
) -> None:
    await conn.execute(
        """UPDATE helper_lists SET title = $2, description = $3, activity_on = $4, deadline = $5
           WHERE list_id = $1""",
        list_id,
        title,
        description,
        activity_on,
        deadline,
    )


async def update_announcement(
    conn: asyncpg.Connection, list_id: uuid.UUID, title: str, body: str
) -> list[asyncpg.Record]:
    """The list's posts in the feed (not deleted) take its new title and text; those posts."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """UPDATE posts SET title = $2, body = $3, updated_at = now()
           WHERE signup_kind = 'helper_list' AND signup_id = $1 AND deleted_at IS NULL
           RETURNING post_id, group_id, author_id, published_at""",
        list_id,
        title,
        body,
    )
    return rows


async def close_list(conn: asyncpg.Connection, list_id: uuid.UUID, person_id: uuid.UUID) -> None:
    """Close the list early; closing a closed list changes nothing."""
    await conn.execute(
        "UPDATE helper_lists SET closed_at = now(), closed_by = $2 WHERE list_id = $1 AND closed_at IS NULL",
        list_id,
        person_id,
    )


async def signups(conn: asyncpg.Connection, list_id: uuid.UUID) -> list[asyncpg.Record]:
    """Everyone on the list's items with their names and the names of their children in the group
    (posts' children copy), by item, places first (in the order they got them), then the waiting list
    in its order."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT s.item_id, s.person_id, s.status, s.signed_at, s.promoted_at, a.display_name,
                  ARRAY(SELECT c.given_name || ' ' || c.family_name
                        FROM memberships m
                        CROSS JOIN unnest(m.children) AS mine(child_id)
                        JOIN children c ON c.child_id = mine.child_id
                        WHERE m.group_id = l.group_id AND m.person_id = s.person_id AND m.active
                        ORDER BY c.given_name, c.family_name) AS children
           FROM helper_signups s
           JOIN helper_lists l ON l.list_id = s.list_id
           LEFT JOIN account_names a ON a.person_id = s.person_id
           WHERE s.list_id = $1
           ORDER BY s.item_id, s.status, COALESCE(s.promoted_at, s.signed_at), s.queued""",
        list_id,
    )
    return rows


async def upsert_account_name(
    conn: asyncpg.Connection, person_id: uuid.UUID, display_name: str, revision: int
) -> None:
    """Keep an account's display name unless the copy already holds a newer revision."""
    await conn.execute(
        """INSERT INTO account_names (person_id, display_name, revision) VALUES ($1, $2, $3)
           ON CONFLICT (person_id) DO UPDATE SET display_name = EXCLUDED.display_name,
             revision = EXCLUDED.revision
           WHERE account_names.revision < EXCLUDED.revision""",
        person_id,
        display_name,
        revision,
    )


async def left_behind(
    conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The person's sign-ups (places and places in line) on the group's lists whose activity is not
    over (neither its day nor the group's school year has passed in the school's time zone), if the
    person is no parent in the group now; with the list's fields ``promote_waiting``
    needs. Lists of a year gone by keep who helped: a year's switch revokes every membership, and
    nobody is to be told of a place in last year's activity."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT s.item_id, l.list_id, l.group_id, l.school_id, l.title, l.deadline
           FROM helper_signups s
           JOIN helper_lists l ON l.list_id = s.list_id
           LEFT JOIN groups g ON g.group_id = l.group_id
           LEFT JOIN schools sc ON sc.school_id = l.school_id
           CROSS JOIN LATERAL (SELECT (now() AT TIME ZONE COALESCE(sc.time_zone, $3))::date AS today) t
           WHERE l.group_id = $1 AND s.person_id = $2
             AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.group_id = $1 AND m.person_id = $2
                                                          AND m.active AND m.role = 'guardian')
             AND l.school_year = COALESCE(g.school_year, l.school_year)
             AND (l.activity_on IS NULL OR l.activity_on >= t.today)
             AND (g.year_ends_on IS NULL OR g.year_ends_on >= t.today)
           ORDER BY s.item_id""",
        group_id,
        person_id,
        DEFAULT_TIME_ZONE,
    )
    return rows
