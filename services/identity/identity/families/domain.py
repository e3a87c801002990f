"""Children, their placements in groups and their guardians: rules and shapes."""

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from identity.emails import EmailAddress
from identity.schools.domain import Input
from shared.pagination import PageQuery

MAX_GUARDIANS_PER_REQUEST = 10
Name = Annotated[str, Field(min_length=1, max_length=100)]
GuardianStatus = Literal["not_invited", "invited", "expired", "linked"]


class NewGuardian(Input):
    email: EmailAddress
    display_name: str = Field(default="", max_length=120)


class CreateChild(Input):
    given_name: Name = Field(description="Roepnaam")
    tussenvoegsel: str = Field(default="", max_length=20, description="e.g. 'van', 'de', 'van der'")
    family_name: Name
    date_of_birth: date | None = None
    photo_consent: bool = Field(default=False, description="Whether photos showing the child may be posted.")
    external_id: str | None = Field(
        default=None, min_length=1, max_length=40, description="The pupil administration's number."
    )
    group_id: uuid.UUID | None = Field(default=None, description="Place the child in this group now.")
    guardians: list[NewGuardian] = Field(default_factory=list, max_length=MAX_GUARDIANS_PER_REQUEST)

    @field_validator("date_of_birth")
    @classmethod
    def plausible(cls, value: date | None) -> date | None:
        if value is not None and not date(1990, 1, 1) <= value <= date.today():
            raise ValueError("not a plausible date of birth for a pupil")
        return value


class UpdateChild(Input):
    given_name: Name | None = None
    tussenvoegsel: str | None = Field(default=None, max_length=20)
    family_name: Name | None = None
    date_of_birth: date | None = None
    photo_consent: bool | None = None


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
    group_id: uuid.UUID


class PlacementView(BaseModel):
    child_id: uuid.UUID
    group_id: uuid.UUID
    school_year_id: uuid.UUID


class Leave(Input):
    left_on: date | None = Field(default=None, description="Default: today; access ends at once.")


class ChildQuery(PageQuery):
    group_id: uuid.UUID | None = None
