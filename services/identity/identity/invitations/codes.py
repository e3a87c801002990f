"""Access codes (seed rule 2): random, easy to type, stored only as a hash.

Sixteen characters from an alphabet without look-alikes (no 0/O, 1/I/L, 5/S, 8/B), shown in four
groups of four: 27^16 ≈ 2^76. The first group is kept in clear as the prefix that guessing is
throttled on, which still leaves about 57 bits unknown to anyone who reads the table.
"""

import hashlib
import re
import secrets

from shared.fields import WHITESPACE

ALPHABET = "ACDEFGHJKMNPQRTUVWXYZ234679"
# Ambiguous characters are left out of ALPHABET; a typed one is read as the character it resembles.
_LOOKALIKES = str.maketrans(
    {"0": "D", "O": "D", "1": "7", "I": "7", "L": "7", "5": "Z", "S": "Z", "8": "3", "B": "3"}
)
GROUPS, GROUP_LENGTH = 4, 4
LENGTH = GROUPS * GROUP_LENGTH
PREFIX_LENGTH = GROUP_LENGTH
# What `canonical` can read: 16 letters and digits (look-alikes included, any case), with spaces and
# dashes anywhere between; no more than 64 characters in all.
_SEPARATOR = f"[{WHITESPACE}-]"
CODE_PATTERN = f"^(?![\\s\\S]{{65}}){_SEPARATOR}*(?:[A-Za-z0-9]{_SEPARATOR}*){{{LENGTH}}}$"
CODE_PROBLEM = "not an access code: 16 letters and digits, as in the email (e.g. KD7M-3QXZ-PA4R-9TNF)"


def new_code() -> str:
    """A fresh code, e.g. ``KD7M-3QXZ-PA4R-9TNF``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + GROUP_LENGTH] for i in range(0, LENGTH, GROUP_LENGTH))


def canonical(typed: str) -> str | None:
    """The code as typed, without spaces, dashes and case, look-alikes mapped; None if it cannot be one."""
    code = re.sub(_SEPARATOR, "", typed).upper().translate(_LOOKALIKES)
    if len(code) != LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def code_hash(code: str) -> bytes:
    """SHA-256 of the canonical code: the code has far more entropy than a password, so no slow KDF."""
    return hashlib.sha256(canonical_or_raise(code).encode()).digest()


def prefix(code: str) -> str:
    return canonical_or_raise(code)[:PREFIX_LENGTH]


def canonical_or_raise(code: str) -> str:
    found = canonical(code)
    if found is None:
        raise ValueError("not an access code")
    return found
