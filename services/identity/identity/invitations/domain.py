"""Invitations and access codes: the shapes of redeeming and inviting."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from identity.invitations.codes import CODE_PATTERN, CODE_PROBLEM
from identity.schools.domain import DisplayName, Input, Locale, Password
from shared.fields import Matches


class Redeem(Input):
    """Without an access token this makes the account (``display_name`` and ``password`` needed);
    with one, it links the logged-in account."""

    code: Annotated[str, Matches(CODE_PATTERN, CODE_PROBLEM)] = Field(
        description="As in the email, e.g. KD7M-3QXZ-PA4R-9TNF"
    )
    display_name: DisplayName | None = None
    password: Password | None = None
    locale: Locale | None = None


class Redeemed(BaseModel):
    person_id: uuid.UUID
    child_id: uuid.UUID
    school_id: uuid.UUID
    access_token: str | None = Field(description="For a new account: it is logged in at once.")
    expires_in: int | None = Field(default=None, description="Seconds until the access token expires.")
    refresh_token: str | None = Field(default=None, description="For a new account, as after a login.")


class InvitationSent(BaseModel):
    guardianship_id: uuid.UUID
    status: str = "invited"


class LaunchView(BaseModel):
    """A school's launch day, worked off in the background: follow it with GET until ``status`` is
    ``done``. ``total`` may still change while it runs (children placed or leaving meanwhile); when
    done it equals ``invited + skipped``."""

    launch_id: uuid.UUID
    school_id: uuid.UUID
    status: Literal["running", "done"]
    total: int = Field(description="Guardians of placed children the launch goes through.")
    invited: int = Field(description="Guardians invited by this launch (each once).")
    skipped: int = Field(description="Guardians already linked or holding an open code, or whose child left.")
    started_at: datetime
    finished_at: datetime | None
