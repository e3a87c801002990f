"""Media's rules and the shapes its API speaks."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

# Rule 6 of the school policy: said wherever photos are shown.
SHARING_NOTICE = {
    "nl": "Deel foto's uit Klaspost niet met anderen: niet via sociale media en niet als schermafbeelding.",
    "en": "Do not share photos from Klaspost with others: not on social media and not as a screenshot.",
}
# Seed rule 6, where the school has switched it on: the mark drawn on every variant, in the school's language.
WATERMARK = {"nl": "Niet delen \u2013 {school}", "en": "Do not share \u2013 {school}"}  # an en dash
# A file that keeps failing for reasons other than being a bad image is given up after this many tries.
MAX_PROCESSING_ATTEMPTS = 5
CLAIM_SECONDS = 300


class PhotoUploaded(BaseModel):
    photo_id: uuid.UUID
    status: Literal["processing"] = Field(description="Its variants are being made; a post may carry it now.")
    size_bytes: int
    content_type: str


class VariantLink(BaseModel):
    size: int
    width: int
    height: int
    url: str
    expires_at: datetime


class PhotoView(BaseModel):
    photo_id: uuid.UUID
    status: Literal["processing", "ready", "rejected"]
    reason: str | None = None
    variants: list[VariantLink]
    notice: str = Field(
        description="the school's notice that its photos may not be passed on (seed rule 6), shown with them"
    )
