"""Children, their placements in groups and their guardians: rules and shapes."""

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from identity.emails import EmailAddress
from identity.schools.domain import Input, Paging, Patch
from shared.fields import Omittable, Trimmed, TrimmedOrEmpty, Uuid

MAX_GUARDIANS_PER_REQUEST = 10
Name = Annotated[str, Trimmed(100)]
Tussenvoegsel = Annotated[str, TrimmedOrEmpty(20), Field(description="e.g. 'van', 'de', 'van der'")]
FIRST_BIRTH_DATE, LAST_BIRTH_DATE = date(1990, 1, 1), date(2099, 12, 31)
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
# Every calendar date from FIRST_BIRTH_DATE to LAST_BIRTH_DATE as YYYY-MM-DD, 29 February in leap years.
BIRTH_DATE_PATTERN = (
    f"^(?:(?:199[0-9]|20[0-9][0-9])-{_MONTH_DAY}|(?:199[26]|20(?:[02468][048]|[13579][26]))-02-29)$"
)


def _plausible(value: date) -> date:
    if not FIRST_BIRTH_DATE <= value <= LAST_BIRTH_DATE:
        raise ValueError(
            f"not a plausible date of birth for a pupil: from {FIRST_BIRTH_DATE} to {LAST_BIRTH_DATE}"
        )
    return value


BirthDate = Annotated[
    date,
    AfterValidator(_plausible),
    # A pattern rather than format "date", so that the schema states the range too.
    WithJsonSchema({"type": "string", "pattern": BIRTH_DATE_PATTERN, "examples": ["2019-03-14"]}),
]
GuardianStatus = Literal["not_invited", "invited", "expired", "linked"]


class NewGuardian(Input):
    email: EmailAddress
    display_name: Annotated[str, TrimmedOrEmpty(120)] = ""


class CreateChild(Input):
    given_name: Name = Field(description="Roepnaam")
    tussenvoegsel: Tussenvoegsel = ""
    family_name: Name
    date_of_birth: BirthDate | None = None
    photo_consent: bool = Field(default=False, description="Whether photos showing the child may be posted.")
    external_id: Annotated[str, Trimmed(40)] | None = Field(
        default=None, description="The pupil administration's number."
    )
    group_id: Uuid | None = Field(default=None, description="Place the child in this group now.")
    guardians: list[NewGuardian] = Field(default_factory=list, max_length=MAX_GUARDIANS_PER_REQUEST)


class UpdateChild(Patch):
    """The fields to change; null clears the date of birth (the only one that may be unknown)."""

    given_name: Omittable[Name] = None
    tussenvoegsel: Omittable[Tussenvoegsel] = None
    family_name: Omittable[Name] = None
    date_of_birth: BirthDate | None = None
    photo_consent: Omittable[bool] = None


class GuardianView(BaseModel):
    guardianship_id: uuid.UUID
    child_id: uuid.UUID
    email: str
    display_name: str
    status: GuardianStatus
    invited_at: datetime | None
    linked_at: datetime | None


class ChildView(BaseModel):
    child_id: uuid.UUID
    school_id: uuid.UUID
    external_id: str | None
    given_name: str
    tussenvoegsel: str
    family_name: str
    date_of_birth: date | None
    photo_consent: bool
    left_on: date | None
    group_id: uuid.UUID | None = Field(description="The group in the current school year, if placed.")
    group_name: str | None
    guardians: list[GuardianView]


class Place(Input):
    group_id: Uuid


class PlacementView(BaseModel):
    child_id: uuid.UUID
    group_id: uuid.UUID
    school_year_id: uuid.UUID


class Leave(Input):
    left_on: date | None = Field(default=None, description="Default: today; access ends at once.")


class ChildQuery(Paging):
    group_id: Uuid | None = Field(default=None, description="Only the children placed in this group.")


class ErasureView(BaseModel):
    """What a child's erasure removed. Nothing of the child is kept but this record's ids and time."""

    child_id: uuid.UUID
    school_id: uuid.UUID
    erased_at: datetime
    placements_removed: int
    guardianships_removed: int
    memberships_changed: int = Field(description="Guardians' group memberships ended or changed by it.")
