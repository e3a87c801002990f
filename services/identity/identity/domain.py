"""Identity's rules and the shapes its API speaks."""

import re
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

SCHOOL_YEAR = re.compile(r"^(\d{4})-(\d{4})$")
LOGIN_WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_ACCOUNT = 10
MAX_FAILURES_PER_ADDRESS = 50


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NewPerson(_Input):
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=120)
    password: str = Field(min_length=1, max_length=128)
    locale: Literal["nl", "en"] = "nl"


class CreateSchool(_Input):
    name: str = Field(min_length=1, max_length=200)
    admin: NewPerson


class SchoolCreated(BaseModel):
    school_id: uuid.UUID
    admin_id: uuid.UUID


class AddPerson(NewPerson):
    role: Literal["teacher", "guardian"]


class PersonView(BaseModel):
    person_id: uuid.UUID
    school_id: uuid.UUID
    role: Literal["admin", "teacher", "guardian"]
    email: str
    display_name: str
    locale: Literal["nl", "en"]


class CreateGroup(_Input):
    name: str = Field(min_length=1, max_length=80, description="e.g. 'Groep 3B'")
    school_year: str = Field(description="e.g. '2026-2027'")

    @field_validator("school_year")
    @classmethod
    def consecutive_years(cls, value: str) -> str:
        match = SCHOOL_YEAR.match(value)
        if not match or int(match.group(2)) != int(match.group(1)) + 1:
            raise ValueError("a school year looks like 2026-2027")
        return value


class GroupView(BaseModel):
    group_id: uuid.UUID
    school_id: uuid.UUID
    name: str
    school_year: str


class MembershipView(BaseModel):
    group_id: uuid.UUID
    person_id: uuid.UUID
    role: Literal["teacher", "guardian"]


class Login(_Input):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)


class TokenView(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


def membership_role(person_role: str) -> Literal["teacher", "guardian"] | None:
    """A teacher teaches a group, a guardian follows it; an admin is no member of groups."""
    if person_role == "teacher":
        return "teacher"
    if person_role == "guardian":
        return "guardian"
    return None


class Jwk(BaseModel):
    """An Ed25519 public key (RFC 8037) that verifies access tokens."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class Jwks(BaseModel):
    keys: list[Jwk]
