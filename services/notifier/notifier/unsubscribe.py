"""One-click unsubscribe (RFC 8058, RFC 2369): every email about posts, sign-ups, conferences and
reminders, and the digest, carries ``List-Unsubscribe: <https://…/unsubscribe/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. A POST to that URL turns that category of
email off for that person (their push choice stays); a GET only shows what a POST would do.

Not on one-off mails (invitation and its reminders, password reset, welcome): they are asked for, or
needed to get in at all, and carry a secret for one reader; an unsubscribe there would only lock a
parent out. They are sent as before, without these headers.

The token names the person and the category and is signed with HMAC-SHA256 under a key made once
per deployment (migration 005): unguessable (128-bit tag), no login needed, and it cannot be altered
to unsubscribe someone else. 49 URL-safe characters.
"""

import base64
import binascii
import hashlib
import hmac
import uuid
from typing import Literal

from notifier.preferences import CATEGORIES, Category

#: What a link turns off: one category, or every category whose emails go into the digest.
Target = Category | Literal["digest"]
_TARGETS: tuple[Target, ...] = (*CATEGORIES, "digest")
_TAG_BYTES = 16


def _tag(key: bytes, person_id: uuid.UUID, target: Target) -> bytes:
    return hmac.new(key, f"unsubscribe:{person_id}:{target}".encode(), hashlib.sha256).digest()[:_TAG_BYTES]


def make_token(key: bytes, person_id: uuid.UUID, target: Target) -> str:
    raw = person_id.bytes + bytes([_TARGETS.index(target)]) + _tag(key, person_id, target)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(key: bytes, token: str) -> tuple[uuid.UUID, Target] | None:
    """(person, target) of a genuine token, else None (malformed, or the tag does not match)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 + 1 + _TAG_BYTES or raw[16] >= len(_TARGETS):
        return None
    person_id, target = uuid.UUID(bytes=raw[:16]), _TARGETS[raw[16]]
    if not hmac.compare_digest(raw[17:], _tag(key, person_id, target)):
        return None
    return person_id, target


def unsubscribe_url(api_base_url: str, token: str) -> str:
    return f"{api_base_url.rstrip('/')}/unsubscribe/{token}"


def headers(api_base_url: str, key: bytes, person_id: uuid.UUID, target: Target) -> dict[str, str]:
    """The two headers of RFC 8058 for one reader and category."""
    url = unsubscribe_url(api_base_url, make_token(key, person_id, target))
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
