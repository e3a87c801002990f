"""The local copy of who belongs to which group, kept by every service that authorises by group.

Identity owns memberships; posts, media and the notifier each keep a ``memberships`` table fed by
its events, with these columns (each service's migration creates it)::

    group_id uuid, person_id uuid, role text, active boolean, revision bigint,
    PRIMARY KEY (group_id, person_id)

and optionally ``children uuid[]``: the children through whom a guardian belongs (a family is a
child), for a service that counts families (posts).

Events may be handled out of order (retries, concurrent handlers, several relays), so each carries a
revision and an older one never overwrites a newer one; a revocation stays as an inactive row.
"""

import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from shared.consumer import Handlers
from shared.contracts import MembershipGranted, MembershipRevoked
from shared.envelope import Envelope

# The 404 for a group the caller is not (yet) in. Copies follow identity one event hop behind (tens of
# milliseconds, seconds under load): a teacher just assigned or a parent just linked may be refused
# for a moment, so the message says a client may try again; it reveals nothing a stranger could use.
NOT_A_MEMBER_YET = (
    "no such group, or you are not a member of it (yet): a membership granted just now reaches this "
    "service within seconds, so try again shortly"
)


async def apply(
    conn: asyncpg.Connection,
    group_id: uuid.UUID,
    person_id: uuid.UUID,
    role: str,
    active: bool,
    revision: int,
    children: list[uuid.UUID] | None = None,
) -> None:
    """Store one membership unless the copy holds a newer revision. ``children`` (the children the
    person belongs through) is stored only when given: a copy without that column passes None."""
    if children is None:
        await conn.execute(
            """INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (group_id, person_id) DO UPDATE
                 SET role = EXCLUDED.role, active = EXCLUDED.active, revision = EXCLUDED.revision
                 WHERE memberships.revision < EXCLUDED.revision""",
            group_id,
            person_id,
            role,
            active,
            revision,
        )
        return
    await conn.execute(
        """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (group_id, person_id) DO UPDATE
             SET role = EXCLUDED.role, active = EXCLUDED.active, revision = EXCLUDED.revision,
                 children = EXCLUDED.children
             WHERE memberships.revision < EXCLUDED.revision""",
        group_id,
        person_id,
        role,
        active,
        revision,
        children,
    )


async def role_in(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> str | None:
    """The person's role in the group now, or None when they do not belong to it (any more)."""
    role: str | None = await conn.fetchval(
        "SELECT role FROM memberships WHERE group_id = $1 AND person_id = $2 AND active", group_id, person_id
    )
    return role


# What a service does in the same transaction after the copy of a membership (group_id, person_id) was
# applied (or found older than what it holds): end what the person or their children had in the group.
AfterChange = Callable[[asyncpg.Connection, uuid.UUID, uuid.UUID], Awaitable[None]]


def keep_membership_copy(
    handlers: Handlers, *, with_children: bool = False, after: AfterChange | None = None
) -> None:
    """Register the two handlers that keep the copy. ``with_children``: the copy has a
    ``children uuid[] NOT NULL DEFAULT '{}'`` column and keeps them (a revoked membership has none).
    ``after``: called with (conn, group_id, person_id) after every grant and revocation; it reads the
    copy as it is now, so it must not rely on the event being newer (events come out of order)."""

    @handlers.on(MembershipGranted)
    async def granted(conn: asyncpg.Connection, _env: Envelope, event: MembershipGranted) -> None:
        children = event.children if with_children else None
        await apply(conn, event.group_id, event.person_id, event.role, True, event.revision, children)
        if after is not None:
            await after(conn, event.group_id, event.person_id)

    @handlers.on(MembershipRevoked)
    async def revoked(conn: asyncpg.Connection, _env: Envelope, event: MembershipRevoked) -> None:
        children: list[uuid.UUID] | None = [] if with_children else None
        await apply(conn, event.group_id, event.person_id, event.role, False, event.revision, children)
        if after is not None:
            await after(conn, event.group_id, event.person_id)
