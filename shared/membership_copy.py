"""The local copy of who belongs to which group, kept by every service that authorises by group.

Identity owns memberships; posts, media and the notifier each keep a ``memberships`` table fed by
its events, with these columns (each service's migration creates it)::

    group_id uuid, person_id uuid, role text, active boolean, revision bigint,
    PRIMARY KEY (group_id, person_id)

Events may be handled out of order (retries, concurrent handlers, several relays), so each carries a
revision and an older one never overwrites a newer one; a revocation stays as an inactive row.
"""

import uuid

import asyncpg

from shared.consumer import Handlers
from shared.contracts import MembershipGranted, MembershipRevoked
from shared.envelope import Envelope


async def apply(
    conn: asyncpg.Connection,
    group_id: uuid.UUID,
    person_id: uuid.UUID,
    role: str,
    active: bool,
    revision: int,
) -> None:
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


async def role_in(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> str | None:
    """The person's role in the group now, or None when they do not belong to it (any more)."""
    role: str | None = await conn.fetchval(
        "SELECT role FROM memberships WHERE group_id = $1 AND person_id = $2 AND active", group_id, person_id
    )
    return role


def keep_membership_copy(handlers: Handlers) -> None:
    """Register the two handlers that keep the copy."""

    @handlers.on(MembershipGranted)
    async def granted(conn: asyncpg.Connection, _env: Envelope, event: MembershipGranted) -> None:
        await apply(conn, event.group_id, event.person_id, event.role, True, event.revision)

    @handlers.on(MembershipRevoked)
    async def revoked(conn: asyncpg.Connection, _env: Envelope, event: MembershipRevoked) -> None:
        await apply(conn, event.group_id, event.person_id, event.role, False, event.revision)
