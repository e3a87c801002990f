"""Each field type's JSON Schema, read by a JSON Schema validator (jsonschema-rs: ECMA-262 patterns,
formats asserted), takes exactly the values its pydantic validation takes."""

import uuid
from typing import Annotated, Any

import jsonschema_rs
import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.fields import WHITESPACE, Email, Matches, QueryInt, Trimmed, Uuid, is_uuid_text


class Form(BaseModel):
    # The config services use for text people type: the field types must not depend on it.
    model_config = ConfigDict(str_strip_whitespace=True)

    text: Annotated[str, Trimmed(10)] = "x"
    letter: Annotated[str, Trimmed(1)] = "x"
    email: Email = "anna@school.example.nl"
    id: Uuid = uuid.UUID(int=1)
    count: QueryInt = 1
    code: Annotated[str, Matches(r"^[A-Z]{2}-[0-9]{2}$", "not a code")] = "AB-12"


def accepted_by_pydantic(field: str, value: Any) -> bool:
    try:
        Form.model_validate({field: value})
    except ValidationError:
        return False
    return True


def accepted_by_schema(field: str, value: Any) -> bool:
    schema = Form.model_json_schema()["properties"][field]
    return bool(jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(value))


def agree(field: str, values: list[Any]) -> list[tuple[Any, bool, bool]]:
    """The values on which schema and validation disagree, with (value, schema, pydantic)."""
    return [
        (value, accepted_by_schema(field, value), accepted_by_pydantic(field, value))
        for value in values
        if accepted_by_schema(field, value) != accepted_by_pydantic(field, value)
    ]


def test_whitespace_is_what_str_strip_removes() -> None:
    spaces = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
    assert jsonschema_rs.validator_for({"pattern": f"^[{WHITESPACE}]*$"}).is_valid(spaces)
    assert all(
        not jsonschema_rs.validator_for({"pattern": f"[{WHITESPACE}]"}).is_valid(chr(c))
        for c in range(0x3100)
        if not chr(c).isspace()
    )


def test_trimmed_text_schema_takes_exactly_what_is_taken_once_trimmed() -> None:
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace()] + ["\ufeff", "\u200b"]
    values = ["x", "1234567890", "12345678901", "", "\x00", "a\x00b", " \n", "a b", "a\nb"]
    values += [f"{s}abc{s}" for s in spaces] + [s for s in spaces] + [f"1234567890{s}" for s in spaces]
    values += [f"{s}1234567890{s}{s}" for s in spaces] + ["a" + s * 8 + "b" for s in spaces]
    assert agree("text", values) == []
    assert agree("letter", ["x", " x ", "xy", "", " ", "\x00"]) == []
    assert Form.model_validate({"text": "\u3000 Gym!\n"}).text == "Gym!"


def test_uuid_schema_and_validation_take_only_the_8_4_4_4_12_form() -> None:
    canonical = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    values = [canonical, canonical.upper(), canonical.replace("-", ""), "{" + canonical + "}"]
    values += ["urn:uuid:" + canonical, canonical + "\n", " " + canonical, canonical[:-1], ""]
    assert agree("id", values) == []
    assert [is_uuid_text(v) for v in values[:3]] == [True, True, False]


def test_query_integers_are_decimal_digits() -> None:
    assert agree("count", [1, 20, -3]) == []
    assert accepted_by_pydantic("count", "20")
    for text in (" 20", "+20", "2_0", "20.0", "0x14", "٢٠", ""):
        assert not accepted_by_pydantic("count", text), text


def test_matches_says_the_problem_and_refuses_a_final_newline() -> None:
    assert agree("code", ["AB-12", "AB-123", "ab-12", "AB-12\n", "xAB-12"]) == []
    with pytest.raises(ValidationError, match="not a code"):
        Form.model_validate({"code": "AB-12\n"})
    with pytest.raises(ValueError, match="anchor"):
        Matches("[A-Z]+", "unanchored")


def test_email_schema_refuses_what_the_validator_refuses() -> None:
    addresses = [
        "anna@school.example.nl",
        "Juf.Anna+klas3@School.Example.NL",
        "o'brien@mail.example.ie",
        "a@b.co",
        "a@xn--schl-3qa.nl",
        "a_b-c@sub-domain.example.com",
        "!#$%&'*+/=?^_`{|}~-@example.org",
        " anna@school.example.nl",
        "anna@school.example.nl ",
        "Anna <anna@school.example.nl>",
        '"anna"@school.example.nl',
        "anna@[192.0.2.1]",
        "anna@localhost",
        "anna@school",
        "anna@school.test",
        "anna@school.TEST",
        "anna@thing.local",
        "anna@x.onion",
        "anna@x.invalid",
        "anna@1.2.3.4",
        "anna@example.c0m0",
        "anna@-school.nl",
        "anna@school-.nl",
        "anna..b@school.nl",
        ".anna@school.nl",
        "anna.@school.nl",
        "änna@school.nl",
        "anna@schöol.nl",
        "a" * 64 + "@school.nl",
        "a" * 65 + "@school.nl",
        "a@" + "b" * 63 + ".nl",
        "a@" + "b" * 64 + ".nl",
        "a@" + ".".join(["b" * 60] * 4) + ".nl",
        "anna@school.nl\n",
        "anna@@school.nl",
        "",
    ]
    assert agree("email", addresses) == []
    assert Form.model_validate({"email": "Juf.Anna@School.Example.NL"}).email == "Juf.Anna@school.example.nl"


def test_text_of_only_invisible_characters_is_empty_and_they_are_trimmed_from_the_ends() -> None:
    # Found when tried (issue 6): a title of only U+200B was accepted and shown blank.
    invisible = ["\u200b", "\u200c", "\u200d", "\u200e", "\u202e", "\u2060", "\u2066", "\ufeff", "\xad"]
    values = [*invisible, "\u200b \u200b", *(f"{c}Gym{c}" for c in invisible), "a\u200db"]
    values += [f"{c}1234567890{c}" for c in invisible] + [f"\u200b{'x' * 11}"]
    assert agree("text", values) == []
    assert agree("letter", ["\u200bx\u200b", "\u200b"]) == []
    for value in invisible:
        assert not accepted_by_pydantic("text", value)
    assert Form.model_validate({"text": "\u200b\u202eGym\u2060 "}).text == "Gym"
    # Inside the text they stay: joiners make emoji and some scripts' words.
    assert Form.model_validate({"text": "👨\u200d👩\u200d👧"}).text == "👨\u200d👩\u200d👧"
