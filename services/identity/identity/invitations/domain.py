"""Invitations and access codes: the shapes of redeeming and inviting."""

import uuid

from pydantic import BaseModel, Field

from identity.invitations.codes import CODE_PATTERN
from identity.schools.domain import DisplayName, Input, Locale


class Redeem(Input):
    """Without an access token this makes the account (``display_name`` and ``password`` needed);
    with one, it links the logged-in account."""

    code: str = Field(pattern=CODE_PATTERN, description="As in the email, e.g. KD7M-3QXZ-PA4R-9TNF")
    display_name: DisplayName | None = None
    password: str | None = Field(default=None, min_length=10, max_length=128)
    locale: Locale | None = None


class Redeemed(BaseModel):
    person_id: uuid.UUID
    child_id: uuid.UUID
    school_id: uuid.UUID
    access_token: str | None = Field(description="For a new account: it is logged in at once.")
    expires_in: int | None = None


class InvitationSent(BaseModel):
    guardianship_id: uuid.UUID
    status: str = "invited"


class InvitationsLaunched(BaseModel):
    school_id: uuid.UUID
    invited: int = Field(
        description="Guardians invited now (each once; linked ones and open codes are skipped)."
    )
