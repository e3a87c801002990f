"""Field types whose JSON Schema states exactly what their validation accepts, so that the OpenAPI
documents, the clients generated from them and fuzzers agree with the servers.

Every pattern here is plain ECMA-262 that Python's ``re`` reads the same way.
"""

import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import email_validator
from pydantic import (
    AfterValidator,
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# What str.strip() removes: the characters for which str.isspace() holds.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Characters that show nothing (soft hyphen, zero-width spaces and joiners, direction marks and
# overrides, word joiner, byte order mark): trimmed from the ends like whitespace, so that a name or
# title made only of them, which would show as blank, is refused as empty.
INVISIBLE = r"\xad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_INVISIBLE = re.compile(f"[{INVISIBLE}]")
_BLANK = WHITESPACE + INVISIBLE


def trim(value: str) -> str:
    """``value`` without whitespace (``str.isspace``) or invisible characters (``INVISIBLE``) at its
    ends."""
    start, end = 0, len(value)
    while start < end and (value[start].isspace() or _INVISIBLE.match(value[start])):
        start += 1
    while end > start and (value[end - 1].isspace() or _INVISIBLE.match(value[end - 1])):
        end -= 1
    return value[start:end]


@dataclass(frozen=True)
class Trimmed:
    """Text a person types, as ``Annotated[str, Trimmed(max_length)]``: surrounding whitespace and
    invisible characters are trimmed (``trim``), then 1 to ``max_length`` characters must remain; NUL is refused anywhere
    (PostgreSQL text cannot hold it). The schema says the same with a pattern, since ``maxLength``
    would count the whitespace that is trimmed.

    Raises ValueError (a 422 through shared.http.validate) naming the rule that failed.
    """

    max_length: int

    @property
    def pattern(self) -> str:
        visible = f"[^{_BLANK}\\x00]"
        if self.max_length == 1:
            return f"^[{_BLANK}]*{visible}[{_BLANK}]*$"
        return f"^[{_BLANK}]*{visible}(?:[^\\x00]{{0,{self.max_length - 2}}}{visible})?[{_BLANK}]*$"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(minLength=1, pattern=self.pattern)
        return json_schema

    def _check(self, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        value = trim(value)
        if not value:
            raise ValueError("is empty")
        if len(value) > self.max_length:
            raise ValueError(f"is longer than {self.max_length} characters")
        return value


@dataclass(frozen=True)
class Matches:
    """``Annotated[str, Matches(pattern, problem)]``: the whole text must match ``pattern``, which the
    schema states; a mismatch raises ValueError saying ``problem`` rather than quoting the pattern.

    The pattern is anchored (``^...$``) and matched whole: Python's ``$`` would also match before a
    final newline, ECMA-262's does not.
    """

    pattern: str
    problem: str

    def __post_init__(self) -> None:
        if not (self.pattern.startswith("^") and self.pattern.endswith("$")):
            raise ValueError(f"anchor the pattern with ^ and $: {self.pattern}")

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: str) -> str:
            if not compiled.fullmatch(value):
                raise ValueError(self.problem)
            return value

        inner = handler(source)
        if inner["type"] == "str":
            # The pattern says where whitespace may be: a model's str_strip_whitespace must not apply.
            inner = {**inner, "strip_whitespace": False}
        return core_schema.no_info_after_validator_function(check, inner)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _canonical_uuid(value: Any) -> Any:
    # pydantic would also take 32 bare hex digits, {braces} and urn:uuid:, which format "uuid" does not.
    if isinstance(value, str) and not _UUID.fullmatch(value):
        raise ValueError("not a UUID in its 8-4-4-4-12 form")
    return value


Uuid = Annotated[uuid.UUID, BeforeValidator(_canonical_uuid)]
"""A UUID as JSON Schema's format "uuid" has it: 36 characters, hex digits in 8-4-4-4-12 groups."""


def is_uuid_text(text: str) -> bool:
    """Whether ``text`` is a UUID in the form ``Uuid`` and the documents' format "uuid" take."""
    return _UUID.fullmatch(text) is not None


def _decimal(value: Any) -> Any:
    # pydantic would also read " 20", "+20", "2_0" and "20.0" as 20, which no JSON Schema integer is.
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError("not a whole number")
    return value


QueryInt = Annotated[int, BeforeValidator(_decimal)]
"""An integer query parameter: its text is decimal digits, with a minus sign if negative."""


SPECIAL_USE_DOMAINS = tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES)
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in word)


EMAIL_PATTERN = (
    f"^(?=[^@]{{1,64}}@)"
    f"(?![^@]*@(?:[^@]*\\.)?(?:{'|'.join(_any_case(d) for d in SPECIAL_USE_DOMAINS)})$)"
    f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*@(?:{_LABEL}\\.)+{_TOP_LABEL}$"
)


def _valid_email(value: str) -> str:
    if not value.isascii():
        raise ValueError("write the address in ASCII, an internationalised domain in its xn-- form")
    try:
        checked = email_validator.validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=True,  # also at most 64 characters before the @
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"not an email address we can send to: {exc}") from None
    return str(checked.ascii_email)


class _EmailJsonSchema:
    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(
            format="email",
            maxLength=254,
            pattern=EMAIL_PATTERN,
            description=(
                "An address mail can be delivered to: ASCII (an internationalised domain in its xn-- "
                "form), no quoted local part, no IP address, no surrounding spaces, a domain with a "
                f"dot and not a special-use one ({', '.join(SPECIAL_USE_DOMAINS)})."
            ),
        )
        return json_schema


Email = Annotated[
    str, StringConstraints(strip_whitespace=False), AfterValidator(_valid_email), _EmailJsonSchema()
]
"""An email address people can be mailed at, normalised (domain in lower case); what is refused, the
schema says too. Surrounding spaces are refused rather than trimmed, whatever the model's config."""


@dataclass(frozen=True)
class NotNull:
    """For a field a PATCH body may leave out but never set to null, as
    ``Annotated[X | None, NotNull()] = None`` (or ``Omittable[X] = None``): left out it stays None
    (nothing to change), an explicit null is refused with a ValueError (a 422 naming the field), and
    the schema states X alone, without null and without the default.
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        def refuse_null(value: Any) -> Any:
            if value is None:
                raise ValueError("may be left out, but not null")
            return value

        # After, not before, the inner schema: JSON input keeps being parsed as JSON (a time from a
        # string in strict mode); a None here can only be an explicit null, as defaults are not validated.
        return core_schema.no_info_after_validator_function(refuse_null, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        options = json_schema.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            kept = [option for option in options if option != {"type": "null"}]
            rest = {k: v for k, v in json_schema.items() if k != "anyOf"}
            json_schema = {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}
        return json_schema


T = TypeVar("T")
Omittable = Annotated[T | None, NotNull()]
"""A PATCH field: leave it out to keep the value; null is refused (see `NotNull`)."""


@dataclass(frozen=True)
class OneOf:
    """``Annotated[str, OneOf(values, problem)]``: the text must be one of ``values`` exactly, which
    the schema states as an enum (sorted); anything else raises ValueError saying ``problem``."""

    values: frozenset[str]
    problem: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        def check(value: str) -> str:
            if value not in self.values:
                raise ValueError(self.problem)
            return value

        inner = handler(source)
        if inner["type"] == "str":
            inner = {**inner, "strip_whitespace": False}
        return core_schema.no_info_after_validator_function(check, inner)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["enum"] = sorted(self.values)
        return json_schema


def omitted_not_null(schema: dict[str, Any]) -> None:
    """A model's ``json_schema_extra`` for PATCH bodies: a property that may be left out but not be
    null (see `NotNull`) does not claim null as its default."""
    for prop in schema.get("properties", {}).values():
        nullable = {"type": "null"} in prop.get("anyOf", []) or "null" in prop.get("type", [])
        if prop.get("default", "") is None and not nullable:
            del prop["default"]


@dataclass(frozen=True)
class TrimmedOrEmpty(Trimmed):
    """As `Trimmed`, except that nothing may remain: blank text becomes the empty string (an optional
    text such as a tussenvoegsel)."""

    @property
    def pattern(self) -> str:
        return f"^(?:[{_BLANK}]*|{super().pattern[1:-1]})$"

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema

    def _check(self, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        value = trim(value)
        if len(value) > self.max_length:
            raise ValueError(f"is longer than {self.max_length} characters")
        return value


def _boolean_text(value: Any) -> Any:
    # pydantic would also read "yes", "on", "1", "t" and "True" as true, which no JSON Schema boolean is.
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("not true or false")
    return value


QueryBool = Annotated[bool, BeforeValidator(_boolean_text)]
"""A boolean query parameter: its text is ``true`` or ``false``, as the documents' type boolean."""


def _integral(value: Any) -> Any:
    # JSON Schema's integer is a whole number however it is written: 6.0 is one, 6.5 and "6" are not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integral = BeforeValidator(_integral)
"""For an integer in a JSON body, as JSON Schema's type integer has it: 6 and 6.0 are 6 (strict
validation alone refuses 6.0, which the documents allow); 6.5, "6" and true are refused. Put it
after the bounds, ``Annotated[int, Field(ge=1, le=10), Integral]``, so the schema states them."""

JsonInt = Annotated[int, Integral]
"""An integer in a JSON body (see `Integral`)."""
