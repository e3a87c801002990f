"""Single-use links to set a password: a reset asked for by its owner, or the welcome of a new staff
member. The token travels only in the email (by event; see shared.contracts.PasswordResetRequested);
identity keeps its SHA-256 hash."""

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg

from shared.contracts import PasswordResetRequested
from shared.outbox import publish

RESET_TTL = timedelta(hours=1)
WELCOME_TTL = timedelta(days=7)


def token_hash(token: str) -> bytes:
    # The token has 256 bits of entropy: a plain hash is enough, no slow KDF needed.
    return hashlib.sha256(token.encode()).digest()


async def issue_reset(
    conn: asyncpg.Connection,
    person_id: uuid.UUID,
    purpose: Literal["reset", "welcome"],
    school_name: str | None = None,
) -> None:
    """Make a new link for the account and have it mailed; earlier unused links stop working."""
    account = await conn.fetchrow("SELECT email, locale FROM accounts WHERE person_id = $1", person_id)
    assert account is not None
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + (WELCOME_TTL if purpose == "welcome" else RESET_TTL)
    await conn.execute(
        "UPDATE password_resets SET used_at = now() WHERE person_id = $1 AND used_at IS NULL", person_id
    )
    request_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO password_resets (reset_id, person_id, token_hash, purpose, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        request_id,
        person_id,
        token_hash(token),
        purpose,
        expires_at,
    )
    event = PasswordResetRequested(
        request_id=request_id,
        person_id=person_id,
        email=account["email"],
        locale=account["locale"],
        purpose=purpose,
        school_name=school_name,
        reset_token=token,
        expires_at=expires_at,
    )
    await publish(conn, event, None)


async def use_reset(conn: asyncpg.Connection, token: str) -> uuid.UUID | None:
    """The account whose valid, unused link this is, now used up; None for any other token."""
    person_id: uuid.UUID | None = await conn.fetchval(
        """UPDATE password_resets SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING person_id""",
        token_hash(token),
    )
    return person_id
