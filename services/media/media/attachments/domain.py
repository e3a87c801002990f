"""Attachments' rules and the shapes their API speaks.

What is accepted: PDF only, judged by its bytes (media.attachments.pdf). Images are photos, not
attachments: they go through the photo door, which removes their metadata (GPS, camera) and re-encodes
them; an image passed on as a file would keep all of it. Office documents (DOCX, XLSX, ODT) are not
accepted: they carry macros, embedded objects and remote references that cannot be judged cheaply, and
every word processor saves the newsletter as a PDF.
"""

import os
import time
import unicodedata
import uuid
from datetime import datetime
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

MAX_FILENAME_LENGTH = 120
DEFAULT_FILENAME = "bijlage.pdf"
# What a filename keeps of the characters Windows, macOS and Linux refuse or treat specially.
_RESERVED = set('<>:"/\\|?*')
# RFC 5987 attr-char besides letters and digits: what stays unescaped in filename*.
_ATTR_CHARS = "!#$&+-.^_`|~"


class UploadQuery(BaseModel):
    """``?filename=``: the name the file had on the uploader's computer, shown to parents (made safe)."""

    model_config = ConfigDict(extra="forbid")

    filename: str | None = Field(
        default=None,
        max_length=255,
        description="The file's name as the uploader knows it; kept made safe (no folders, no control "
        f"characters, at most {MAX_FILENAME_LENGTH} characters, ending in .pdf). Default {DEFAULT_FILENAME}.",
    )


class UploadedAttachment(BaseModel):
    attachment_id: uuid.UUID
    status: Literal["uploaded"]
    filename: str
    content_type: str
    size_bytes: int
    pages: int


class AttachmentLink(BaseModel):
    """A short-lived link that downloads the attachment (never shows it in a page)."""

    attachment_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    url: str = Field(description="Presigned; works until expires_at, at most 5 minutes.")
    expires_at: datetime


def new_attachment_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Time-ordered, so posts can
    tell an id media gave a moment ago (its copy may be an event behind) from one that is not an upload."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant 10
    return uuid.UUID(int=value)


def safe_filename(raw: str | None) -> str:
    """The name to keep and show: the last path segment only, no control or format characters (so no
    right-to-left override that turns "fdp.exe" around), none that file systems reserve, whitespace
    collapsed, no leading dots, at most MAX_FILENAME_LENGTH characters, ending in ".pdf" (the bytes are
    a PDF, whatever the name said). DEFAULT_FILENAME when nothing is left."""
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        " " if c.isspace() else "_" if c in _RESERVED else c
        for c in name
        if not unicodedata.category(c).startswith("C") or c.isspace()
    )
    name = " ".join(name.split()).lstrip(". ")
    stem = name[:-4] if name.lower().endswith(".pdf") else name
    stem = stem.rstrip(". ")[: MAX_FILENAME_LENGTH - 4].rstrip(". ")
    return f"{stem}.pdf" if stem else DEFAULT_FILENAME


def download_disposition(filename: str) -> str:
    """``Content-Disposition`` that makes a browser save the file under its name (RFC 6266), the name
    in UTF-8 (RFC 5987 ``filename*``) with an ASCII fallback for old clients."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"
