"""Time-ordered ids (UUID version 7, RFC 9562): 48 bits of Unix time in milliseconds, then 74 random
bits. A service that learns of an object through an event can tell from its id alone whether it was made
moments ago (its copy may not have heard of it yet: worth a short wait) or is unknown for good (answer
at once). Media gives photos such ids; posts waits only for those (publishing.photos)."""

import secrets
import time
import uuid
from datetime import UTC, datetime

_MS_BITS = 48
_RAND_A_BITS, _RAND_B_BITS = 12, 62


def time_ordered_id() -> uuid.UUID:
    """A new version 7 UUID for now."""
    ms = time.time_ns() // 1_000_000
    rand_a, rand_b = secrets.randbits(_RAND_A_BITS), secrets.randbits(_RAND_B_BITS)
    value = (ms & ((1 << _MS_BITS) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def minted_at(value: uuid.UUID) -> datetime | None:
    """When a version 7 UUID says it was made; None for any other kind of id, and for one whose 48 bits of
    time name a moment past what a datetime holds (after 9999; made up, not minted: a caller may send any)."""
    if value.version != 7:
        return None
    try:
        return datetime.fromtimestamp((value.int >> 80) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None
