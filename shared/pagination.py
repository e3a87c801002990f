"""Keyset pagination for list endpoints: ``?limit=&cursor=`` in, ``{"items": [...], "next_cursor"}`` out.

A cursor is the sort key of the last item of a page, opaque to clients (base64url of JSON), so a page
never skips or repeats a row when rows are added between requests, unlike OFFSET.
"""

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,400}$"


class PageQuery(BaseModel):
    """``limit`` (1 to 200, default 50) and the previous page's ``next_cursor``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(
        default=None, pattern=CURSOR_PATTERN, description="The previous page's next_cursor."
    )

    @field_validator("cursor")
    @classmethod
    def readable(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    def after(self) -> list[Any] | None:
        """The sort key the page starts after, or None for the first page."""
        return decode_cursor(self.cursor) if self.cursor else None


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


def encode_cursor(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> list[Any]:
    """The sort key in a cursor; ValueError for anything this API did not hand out."""
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError("not a cursor this list handed out") from None
    if not isinstance(key, list) or not key:
        raise ValueError("not a cursor this list handed out")
    return key


def page_of(items: list[T], limit: int, key: Any) -> Page[T]:
    """A page from up to ``limit`` items; ``key(item)`` gives the last item's sort key for the cursor.

    Callers fetch ``limit`` rows; a full page gets a cursor (the next may be empty, which is cheap).
    """
    next_cursor = encode_cursor(key(items[-1])) if len(items) == limit else None
    return Page[T](items=items, next_cursor=next_cursor)
