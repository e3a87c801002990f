"""Refresh tokens: opaque, random, kept only as SHA-256 hashes, rotated at every use.

Each login starts a *family*; a refresh uses its token up and hands out the next one of the family.
A used token that comes back was copied (or the client lost an answer): as RFC 9700 (OAuth 2.0
Security BCP) §4.14.2 advises, the whole family is revoked, so the thief's and the owner's tokens stop
working alike and the owner logs in again. Logging out, setting a password and a disabled account end
families too.
"""

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from identity.login.resets import token_hash
from identity.settings import Settings


@dataclass(frozen=True)
class Lifetime:
    """A family ends ``idle`` after its last refresh, and ``total`` after the login at the latest."""

    idle: timedelta
    total: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "Lifetime":
        return cls(
            idle=timedelta(days=settings.refresh_idle_days), total=timedelta(days=settings.refresh_max_days)
        )


@dataclass(frozen=True)
class Issued:
    person_id: uuid.UUID
    token: str
    expires_at: datetime


async def start_family(conn: asyncpg.Connection, person_id: uuid.UUID, lifetime: Lifetime) -> Issued:
    """A new family for a login, with its first token."""
    family_id = uuid.uuid4()
    family_expires_at: datetime = await conn.fetchval(
        """INSERT INTO refresh_families (family_id, person_id, expires_at)
           VALUES ($1, $2, now() + $3::interval) RETURNING expires_at""",
        family_id,
        person_id,
        lifetime.total,
    )
    return await _next_token(conn, family_id, person_id, family_expires_at, lifetime)


async def rotate(conn: asyncpg.Connection, token: str, lifetime: Lifetime) -> Issued | None:
    """Use ``token`` up and return the next token of its family; None when it is unknown, expired,
    revoked, used before (then its family is revoked: commit before answering) or of a disabled
    account (its family is revoked too)."""
    row = await conn.fetchrow(
        """SELECT t.family_id, t.used_at, t.expires_at <= now() OR f.expires_at <= now() AS expired,
                  f.person_id, f.expires_at AS family_expires_at, f.revoked_at, a.disabled
           FROM refresh_tokens t JOIN refresh_families f USING (family_id) JOIN accounts a USING (person_id)
           WHERE t.token_hash = $1
           FOR UPDATE OF t, f""",
        token_hash(token),
    )
    if row is None or row["revoked_at"] is not None or row["expired"]:
        return None
    if row["used_at"] is not None or row["disabled"]:
        await revoke_family(conn, row["family_id"])
        return None
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash(token))
    return await _next_token(conn, row["family_id"], row["person_id"], row["family_expires_at"], lifetime)


async def revoke_family_of(conn: asyncpg.Connection, token: str) -> None:
    """Log out: end the family of ``token``, if it is one of ours (used or not)."""
    family_id = await conn.fetchval(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", token_hash(token)
    )
    if family_id is not None:
        await revoke_family(conn, family_id)


async def revoke_family(conn: asyncpg.Connection, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_families SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )


async def revoke_all(conn: asyncpg.Connection, person_id: uuid.UUID) -> None:
    """End every family of the account (a new password, a disabled account)."""
    await conn.execute(
        "UPDATE refresh_families SET revoked_at = now() WHERE person_id = $1 AND revoked_at IS NULL",
        person_id,
    )


async def forget_ended(conn: asyncpg.Connection, lifetime: Lifetime) -> None:
    """Housekeeping: families that ended (expired or revoked) more than ``lifetime.idle`` ago, and
    tokens used or expired that long ago. Until then a copied token that comes back is recognised as
    used, and revokes its family."""
    await conn.execute(
        "DELETE FROM refresh_families WHERE expires_at < now() - $1::interval OR revoked_at < now() - $1::interval",
        lifetime.idle,
    )
    await conn.execute(
        "DELETE FROM refresh_tokens WHERE used_at < now() - $1::interval OR expires_at < now() - $1::interval",
        lifetime.idle,
    )


async def _next_token(
    conn: asyncpg.Connection,
    family_id: uuid.UUID,
    person_id: uuid.UUID,
    family_expires_at: datetime,
    lifetime: Lifetime,
) -> Issued:
    token = secrets.token_urlsafe(32)
    expires_at: datetime = await conn.fetchval(
        """INSERT INTO refresh_tokens (token_hash, family_id, expires_at)
           VALUES ($1, $2, least(now() + $3::interval, $4)) RETURNING expires_at""",
        token_hash(token),
        family_id,
        lifetime.idle,
        family_expires_at,
    )
    return Issued(person_id=person_id, token=token, expires_at=expires_at)
