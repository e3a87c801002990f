"""Preparing next school year by moving whole groups up: "groep 3B becomes groep 4B" (issue 5).

The children of a promoted group are placed in its new group for the target year; groups of the
final grade (groep 8) are left out, and so is any group the admin names. An admin may rename a
group's successor or give it teachers; everything else follows the default rule below. Who sees
which group changes only at the switch (``identity.schools.years``), not at the promotion.
"""

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from identity.schools.domain import GroupName, Input
from shared.errors import ValidationFailed

MAX_GROUPS = 200
MAX_TEACHERS_PER_GROUP = 10
DUTCH_FINAL_GRADE = 8
NotPromotedReason = Literal["left_out", "final_grade", "combined", "no_grade"]

# A name that ends in the grade, optionally followed by the parallel letter: "Groep 3", "groep 3B",
# "3 b". A "/" before the number ("Groep 1/2A") is a combination group: whole-group promotion
# would split it (its grade-1 children stay), so it is left to the admin.
_GRADE_AT_END = re.compile(r"^(?P<head>.*?)(?P<grade>\d{1,2})(?P<tail>\s?[A-Za-z])?$")


def why_not_promoted(name: str, final_grade: int = DUTCH_FINAL_GRADE) -> NotPromotedReason | None:
    """Why a group has no successor by default: "final_grade" (its children leave school),
    "combined" ("1/2A") or "no_grade" (no number ends its name); None when it has one."""
    match = _GRADE_AT_END.match(name.strip())
    if match is None:
        return "no_grade"
    if match["head"].rstrip().endswith(("/", "-", "+")):
        return "combined"
    if int(match["grade"]) >= final_grade:
        return "final_grade"
    return None


def promoted_name(name: str) -> str:
    """The default name of the group's successor: "Groep 3B" -> "Groep 4B", "groep 7" -> "groep 8".
    Raises ValueError for a name without a grade at its end (see ``why_not_promoted``)."""
    match = _GRADE_AT_END.match(name.strip())
    if match is None:
        raise ValueError(f"no grade at the end of {name!r}")
    return f"{match['head']}{int(match['grade']) + 1}{match['tail'] or ''}"


class PromotedGroup(Input):
    """One group's successor as the admin wants it, overriding the default name."""

    from_group_id: uuid.UUID = Field(description="A group of the source year.")
    name: GroupName = Field(description="The successor's name in the target year, e.g. 'Groep 4B'.")
    teachers: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=MAX_TEACHERS_PER_GROUP,
        description="Teachers of the school who will teach the successor.",
    )


class Promote(Input):
    """Move the groups of ``from_school_year`` up into this (later) school year."""

    from_school_year: str | None = Field(
        default=None,
        max_length=40,
        description="Name ('2026-2027') or id of the source year; default: the year ending last before this one.",
    )
    groups: list[PromotedGroup] = Field(
        default_factory=list,
        max_length=MAX_GROUPS,
        description="Overrides per group; groups not named here follow the default rule.",
    )
    leave_out: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=MAX_GROUPS,
        description="Groups of the source year whose children are not placed next year.",
    )
    final_grade: int = Field(
        default=DUTCH_FINAL_GRADE,
        ge=1,
        le=12,
        description="Groups of this grade (by the number ending their name) are left out by default.",
    )
    dry_run: bool = Field(default=False, description="Only answer what would happen; change nothing.")


class PlannedGroup(BaseModel):
    from_group_id: uuid.UUID
    from_name: str
    group_id: uuid.UUID = Field(description="The successor in the target year (made unless dry run).")
    name: str
    new: bool = Field(description="Whether the successor is (or, in a dry run, would be) made now.")
    children_placed: int = Field(description="Children placed in the successor by this promotion.")
    children_already_placed: int = Field(
        description="Children of the group who already had a placement in the target year (kept)."
    )
    teachers: list[uuid.UUID]


class NotPromoted(BaseModel):
    group_id: uuid.UUID
    name: str
    reason: NotPromotedReason
    children: int = Field(description="Children of the group who are not placed by the promotion.")


class PromotionPlan(BaseModel):
    from_school_year: str
    to_school_year: str
    dry_run: bool
    groups: list[PlannedGroup]
    not_promoted: list[NotPromoted]


@dataclass(frozen=True)
class SourceGroup:
    """A group of the source year, with its children who have not left."""

    group_id: uuid.UUID
    name: str
    children: int
    already_placed: int


@dataclass(frozen=True)
class Successor:
    """What the rules and the admin's overrides say one source group becomes."""

    source: SourceGroup
    name: str
    teachers: tuple[uuid.UUID, ...]


def refusal(field: str, problem: str) -> ValidationFailed:
    """A 422 naming the field of the promotion request that cannot be carried out."""
    return ValidationFailed("the promotion cannot be done as asked", [{"field": field, "problem": problem}])


def successors(sources: list[SourceGroup], command: Promote) -> tuple[list[Successor], list[NotPromoted]]:
    """Apply the default rule and the admin's overrides to every group of the source year.

    Raises ValidationFailed (422) when an override or left-out id is not a group of the source year,
    a group is both overridden and left out, or two groups would get the same successor.
    """
    by_id = {s.group_id: s for s in sources}
    overrides = {g.from_group_id: g for g in command.groups}
    for i, given in enumerate(command.groups):
        if given.from_group_id not in by_id:
            raise refusal(f"groups.{i}.from_group_id", "not a group of the source school year")
        if overrides[given.from_group_id] is not given:
            raise refusal(f"groups.{i}.from_group_id", "this group is named twice")
    for i, group_id in enumerate(command.leave_out):
        if group_id not in by_id:
            raise refusal(f"leave_out.{i}", "not a group of the source school year")
        if group_id in overrides:
            raise refusal(f"leave_out.{i}", "this group is also in 'groups'")
    planned: list[Successor] = []
    skipped: list[NotPromoted] = []
    for source in sorted(sources, key=lambda s: s.name):
        override = overrides.get(source.group_id)
        reason: NotPromotedReason | None = "left_out" if source.group_id in command.leave_out else None
        if reason is None and override is None:
            reason = why_not_promoted(source.name, command.final_grade)
        if reason is not None:
            skipped.append(
                NotPromoted(
                    group_id=source.group_id, name=source.name, reason=reason, children=source.children
                )
            )
            continue
        name = override.name if override is not None else promoted_name(source.name)
        teachers = tuple(dict.fromkeys(override.teachers)) if override else ()
        planned.append(Successor(source, name, teachers))
    names = [s.name.casefold() for s in planned]
    if len(set(names)) != len(names):
        twice = next(s.name for s in planned if names.count(s.name.casefold()) > 1)
        raise refusal("groups", f"two groups would both become '{twice}': give one another name")
    return planned, skipped
