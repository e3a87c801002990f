"""Shapes of tagging: which children a teacher says appear in a photo, and what that means for posting."""

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.fields import Uuid

MAX_TAGS = 60
WITHOUT_CONSENT = "shows a child without photo consent: untag the child or choose another photo"


class TagChildren(BaseModel):
    model_config = ConfigDict(extra="forbid")

    child_ids: list[Uuid] = Field(
        max_length=MAX_TAGS,
        json_schema_extra={"uniqueItems": True},
        description="Every child who appears in the photo, children of the school (a joint activity may "
        "show another group's children); [] removes the tags. The teacher's word: no face recognition.",
    )

    @field_validator("child_ids")
    @classmethod
    def unique(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("a child is listed twice")
        return value


class TaggedChild(BaseModel):
    child_id: uuid.UUID
    photo_consent: bool = Field(
        description="False also for a child whose consent the school has not recorded."
    )


class PhotoChildren(BaseModel):
    photo_id: uuid.UUID
    children: list[TaggedChild]
    postable: bool = Field(
        description="False while a tagged child has no photo consent: no post may carry it."
    )
    problem: str | None = None
