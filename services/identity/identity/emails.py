"""Email addresses as identity accepts them: validated and normalised by email-validator (a
well-kept library; address syntax is RFC 5321/5322/6531 territory, not ours).

Stored form: the local part as typed, the domain in IDNA A-label form (``xn--…``), so that every
relay can deliver it; uniqueness is case-insensitive (``lower(email)``). A non-ASCII local part needs
SMTPUTF8 end to end: it is refused unless the deployment says its relay supports it.
"""

from typing import Annotated

import email_validator
from pydantic import AfterValidator, Field

MAX_EMAIL_LENGTH = 254


def normalise_email(text: str, *, allow_smtputf8: bool = False) -> str:
    """The address to store and mail, or ValueError saying in words why it cannot be used.

    Refuses special-use domains (RFC 6761: .local, .test, .invalid, localhost, ...), which no mail
    relay delivers to.
    """
    try:
        result = email_validator.validate_email(
            text.strip(), check_deliverability=False, allow_smtputf8=allow_smtputf8
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"not a deliverable email address: {exc}") from None
    return result.ascii_email or result.normalized


def _valid(text: str) -> str:
    return normalise_email(text)


# In request models: the same check, and the schema says what it is.
EmailAddress = Annotated[
    str,
    Field(min_length=3, max_length=MAX_EMAIL_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(_valid),
]
