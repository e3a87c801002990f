"""Password hashing (argon2id) and the password policy (ASVS V6, NIST SP 800-63B).

Hashing costs ~19 MiB and tens of milliseconds, so it runs in a thread, never on the event loop.
Passwords are NFKC-normalised first, so the same password typed on another keyboard or OS still
matches.
"""

import asyncio
import secrets
import unicodedata
from importlib import resources
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

MIN_LENGTH: Final = 10
MAX_LENGTH: Final = 128

# OWASP's argon2id minimum: m=19 MiB, t=2, p=1. Raising these makes check_needs_rehash upgrade
# old hashes at the next login.
_hasher: Final = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

# Verified against when the email is unknown, so that answer takes as long as a wrong password.
DUMMY_HASH: Final = _hasher.hash(secrets.token_urlsafe(32))


def _load_common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


COMMON_PASSWORDS: Final = _load_common_passwords()


def _normalize(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, _normalize(password))


async def verify_password(password_hash: str, password: str) -> tuple[bool, str | None]:
    """Whether the password matches, and a new hash to store when the parameters have changed."""
    return await asyncio.to_thread(_verify, password_hash, _normalize(password))


def _verify(password_hash: str, password: str) -> tuple[bool, str | None]:
    # A malformed stored hash raises InvalidHashError: a data fault, not a wrong password.
    try:
        _hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False, None
    if _hasher.check_needs_rehash(password_hash):
        return True, _hasher.hash(password)
    return True, None


def check_password_policy(password: str, email: str | None = None) -> str | None:
    """Why the password is refused, in words for the user; None when it is acceptable.

    No composition rules (they make passwords worse, not stronger); length and a breached list do.
    The length is counted as typed (characters, as the documents' minLength/maxLength count them),
    the breached list compared after normalising.
    """
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    password = _normalize(password)
    if password.lower() in COMMON_PASSWORDS:
        return "This password is too common; choose another."
    if email is not None and password.casefold() == email.strip().casefold():
        return "Your password must not be your email address."
    return None
