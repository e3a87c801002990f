"""Email addresses as identity accepts them: validated and normalised by email-validator (a
well-kept library; address syntax is RFC 5321/5322/6531 territory, not ours).

Stored form: the local part as typed, the domain in IDNA A-label form (``xn--…``), so that every
relay can deliver it; uniqueness is case-insensitive (``lower(email)``). A non-ASCII local part needs
SMTPUTF8 end to end: it is refused unless the deployment says its relay supports it.

In request bodies (``EmailAddress``) an address must first match ``EMAIL_PATTERN``, which the
OpenAPI document states: what the pattern takes, email-validator takes too, so the document and the
server agree on every address.
"""

import re
from typing import Annotated

import email_validator
from pydantic import AfterValidator, StringConstraints, WithJsonSchema

MAX_EMAIL_LENGTH = 254
SPECIAL_USE_DOMAINS = tuple(sorted(email_validator.SPECIAL_USE_DOMAIN_NAMES))

# A local part as a dot-atom of RFC 5322's atext (no quoted strings), at most 64 characters.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LOCAL = f"(?![^@]{{65}})[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*"
# IDNA refuses "--" in a label's third and fourth place (the xn-- of an A-label): a label
# internationalised is written in its own letters, never as xn--.
_NO_DOUBLE_DASH = "(?![A-Za-z0-9\u00c0-\u00ff]{2}--)"
_ASCII_LABEL = f"{_NO_DOUBLE_DASH}[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
# Latin letters with diacritics (U+00C0 to U+00FF but for the signs of multiplication and division), up to 20 characters a label:
# their A-label stays well within 63 characters.
_LETTER = "A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_LATIN_LABEL = f"{_NO_DOUBLE_DASH}[{_LETTER}](?:[{_LETTER}-]{{0,18}}[{_LETTER}])?"
_TOP_LABEL = f"{_NO_DOUBLE_DASH}(?:[A-Za-z0-9][A-Za-z0-9-]{{0,61}})?[A-Za-z]"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in word)


_NOT_SPECIAL = f"(?![^@]*@(?:[^@]*\\.)?(?:{'|'.join(_any_case(d) for d in SPECIAL_USE_DOMAINS)})$)"
# ASCII addresses up to the length limit; with accented letters a domain of at most 46 characters, as
# its A-label form is at most four times as long (a label "é." becomes "xn--9ca."): the address stays
# within 254 characters.
EMAIL_PATTERN = (
    f"^{_NOT_SPECIAL}(?:{_LOCAL}@(?:{_ASCII_LABEL}\\.)+{_TOP_LABEL}"
    f"|(?![^@]*@[^@]{{47}}){_LOCAL}@(?:{_LATIN_LABEL}\\.)+{_TOP_LABEL})$"
)
_EMAIL = re.compile(EMAIL_PATTERN)


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
    if len(text) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(text):
        raise ValueError(
            "not an email address we can send to: letters, digits and .!#$%&'*+/=?^_`{|}~- before the @, "
            "a domain with a dot after it (accented letters allowed, no xn--), no spaces"
        )
    return normalise_email(text)


# In request models: the same check as the schema says, surrounding spaces refused rather than trimmed
# (whatever the model's config), then email-validator's normalisation.
EmailAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=False),
    AfterValidator(_valid),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": MAX_EMAIL_LENGTH,
            "pattern": EMAIL_PATTERN,
            "description": (
                "An address mail can be delivered to: no quoted local part, no IP address, no spaces, "
                "a domain with a dot, not a special-use one "
                f"({', '.join(SPECIAL_USE_DOMAINS)}); a domain may have accented Latin letters "
                "(stored in its xn-- form), the domain then at most 46 characters."
            ),
            "examples": ["juf.anna@school.example.nl"],
        }
    ),
]
