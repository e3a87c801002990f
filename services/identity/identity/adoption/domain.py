"""Adoption figures (seed rule 10). A family is a child placed in the year: "families (children)".

- placed: children placed in the group that year who have not left;
- invited: of those, children with at least one guardian linked or holding an open (unused,
  unrevoked, unexpired) or used access code;
- linked: children with at least one guardian linked to an account;
- pending: placed but not linked;
- reached_percent: linked / placed in percent, one decimal (None without placed children); the goal
  is 100.
"""

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from identity.schools.domain import Input, SchoolYearName


class AdoptionQuery(Input):
    """GET /schools/{id}/adoption's query: which year, and JSON or CSV."""

    school_year: SchoolYearName | None = Field(default=None, description="Default: the current year.")
    format: Literal["json", "csv"] | None = Field(
        default=None, description="csv for a spreadsheet; the Accept header text/csv does the same."
    )


class Figures(BaseModel):
    """Counts of families (children) for a group or the whole school; see the module's definitions."""

    placed: int
    invited: int
    linked: int
    pending: int
    reached_percent: float | None = Field(
        description="linked / placed in percent, one decimal; the goal is 100."
    )


class GroupAdoption(Figures):
    """One group's figures."""

    group_id: uuid.UUID
    name: str


class Adoption(BaseModel):
    """A school year's adoption per group and for the school (seed rule 10)."""

    school_id: uuid.UUID
    school_year: str
    groups: list[GroupAdoption] = Field(description="By group name.")
    school: Figures = Field(description="The whole school: the sums of the groups.")


def figures(placed: int, invited: int, linked: int) -> Figures:
    """The figures of ``placed`` families, ``invited`` and ``linked`` of them."""
    return Figures(
        placed=placed,
        invited=invited,
        linked=linked,
        pending=placed - linked,
        reached_percent=round(100 * linked / placed, 1) if placed else None,
    )
