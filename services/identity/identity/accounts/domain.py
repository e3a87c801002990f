"""The account as its owner sees it: contact details and every role it holds."""

import uuid

from pydantic import BaseModel, Field

from identity.schools.domain import DisplayName, Locale, Patch, StaffRole
from shared.fields import Omittable


class SchoolRoles(BaseModel):
    school_id: uuid.UUID
    school_name: str
    roles: list[StaffRole]


class ChildOfMine(BaseModel):
    child_id: uuid.UUID
    school_id: uuid.UUID
    school_name: str
    given_name: str
    tussenvoegsel: str
    family_name: str
    group_id: uuid.UUID | None = Field(description="The child's group in the current school year.")
    group_name: str | None


class TaughtGroup(BaseModel):
    group_id: uuid.UUID
    group_name: str
    school_id: uuid.UUID
    school_name: str


class Me(BaseModel):
    """``staff``: schools where the account is admin or teacher; ``children``: children it is a
    linked guardian of; ``teaches``: groups it teaches this school year."""

    person_id: uuid.UUID
    email: str
    display_name: str
    locale: Locale
    staff: list[SchoolRoles]
    children: list[ChildOfMine]
    teaches: list[TaughtGroup]


class UpdateMe(Patch):
    display_name: Omittable[DisplayName] = None
    locale: Omittable[Locale] = None
