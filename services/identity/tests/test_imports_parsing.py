"""Reading class-list exports and planning an import, without a database (issue 5)."""

import uuid
from datetime import date

import pytest

from identity.imports.domain import KnownChild, group_key, parse_date, plan
from identity.imports.parsing import header_key, read_table
from shared.errors import ValidationFailed
from shared.testing.class_lists import GROUPS, class_list, pupils

TODAY = date(2026, 12, 1)
GROUP_IDS = {name: uuid.uuid4() for name in GROUPS}


def problems_of(exc: pytest.ExceptionInfo[ValidationFailed]) -> str:
    return " ".join(d["problem"] for d in exc.value.details)


def test_a_parnassys_export_with_bom_and_semicolons_is_read_with_its_dutch_headers() -> None:
    data = class_list(pupils(5)).render(";", "utf-8-sig")

    table = read_table(data)

    assert (table.encoding, table.delimiter, len(table.rows)) == ("utf-8", ";", 5)
    assert table.columns["guardian_email_2"] == "E-mail ouder 2"
    assert table.columns["photo_consent"] == "Toestemming foto's"
    assert [r.line for r in table.rows] == [2, 3, 4, 5, 6]


def test_windows_1252_and_utf8_exports_read_the_same_names() -> None:
    people = pupils(40, cp1252_only=True)
    as_utf8 = read_table(class_list(people).render(";", "utf-8"))
    as_1252 = read_table(class_list(people).render(";", "windows-1252"))

    assert as_1252.encoding == "windows-1252"
    assert [r.values for r in as_1252.rows] == [r.values for r in as_utf8.rows]


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_the_delimiter_is_found_from_the_header_line(delimiter: str) -> None:
    table = read_table(class_list(pupils(3)).render(delimiter))
    assert table.delimiter == delimiter
    assert table.rows[0].values["group"] in GROUPS


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"\xef\xbb\xbf\r\n  \r\n", "empty"),
        ("Roepnaam;Achternaam;Groep;E-mail ouder 1\r\n".encode("utf-16"), "UTF-16"),
        (b"PK\x03\x04\x14\x00\x06\x00", "UTF-16"),
        ("Roepnaam;Achternaam\nÃœnal;Ã‡elik\n".encode(), "converted twice"),
        (b"Roepnaam;Achternaam\n\x81\x8d;x\n", "neither UTF-8 nor Windows-1252"),
        (b"Roepnaam;Achternaam;Groep;E-mail ouder 1\r\n", "no pupils"),
        (b"just one column\r\nx\r\n", "single column"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_saying_why(data: bytes, expected: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        read_table(data)
    assert expected in problems_of(exc)


def test_missing_columns_are_each_named() -> None:
    with pytest.raises(ValidationFailed) as exc:
        read_table(b"Voornaam;Naam;Jaargroep\nEmma;Jansen;3\n")
    assert {d["field"] for d in exc.value.details} == {"family_name", "group", "guardian_email_1"}


def test_a_mapping_names_headers_the_aliases_do_not_know() -> None:
    data = b"Kind;Familie;Jaargroep;Mail verzorger A\nEmma;Jansen;Groep 3;a@ouders.example.nl\n"
    mapping = {
        "given_name": "kind",
        "family_name": "Familie",
        "group": "JAARGROEP",
        "guardian_email_1": "Mail verzorger A",
    }

    table = read_table(data, mapping)

    assert table.rows[0].values == {
        "given_name": "Emma",
        "family_name": "Jansen",
        "group": "Groep 3",
        "guardian_email_1": "a@ouders.example.nl",
    }


def test_a_mapping_to_a_header_the_file_lacks_is_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        read_table(class_list(pupils(2)).render(), {"group": "Stamgroep", "shoe_size": "Maat"})
    assert {d["field"] for d in exc.value.details} == {"mapping.group", "mapping.shoe_size"}


def test_more_rows_than_the_limit_are_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        read_table(class_list(pupils(11)).render(), max_rows=10)
    assert "more than 10 pupils" in problems_of(exc)


def test_a_quoted_field_over_two_lines_keeps_the_line_numbers_of_the_file() -> None:
    data = (
        b'Roepnaam;Achternaam;Groep;E-mail ouder 1\n"Emma\nLouise";Jansen;Groep 3;a@ouders.example.nl\n'
        b"\nDaan;Bos;Groep 4;b@ouders.example.nl\n"
    )
    assert [r.line for r in read_table(data).rows] == [2, 5]


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("E-mail Ouder 1", "emailouder1"),
        ("Toestemming foto's", "toestemmingfotos"),
        ("Géboortedatum ", "geboortedatum"),
    ],
)
def test_headers_compare_without_case_punctuation_or_diacritics(header: str, key: str) -> None:
    assert header_key(header) == key


def test_dates_in_dutch_and_iso_form_are_read() -> None:
    assert parse_date("03-09-2018") == parse_date("2018-09-03") == parse_date("3/9/2018") == date(2018, 9, 3)


def test_a_group_matches_without_its_groep_prefix_or_case() -> None:
    assert group_key("groep 3b") == group_key("3B") == group_key("Groep  3B")


def _known(**fields: object) -> KnownChild:
    base: dict[str, object] = {
        "child_id": uuid.uuid4(),
        "external_id": None,
        "given_name": "Emre",
        "tussenvoegsel": "",
        "family_name": "Ünal",
        "date_of_birth": date(2017, 3, 1),
        "photo_consent": False,
        "left_on": None,
        "group_id": GROUP_IDS["Groep 4"],
        "group": "Groep 4",
        "emails": frozenset({"unal@ouders.example.nl"}),
    }
    return KnownChild(**{**base, **fields})  # type: ignore[arg-type]


def _table(*rows: str) -> bytes:
    header = "Roepnaam;Tussenvoegsel;Achternaam;Groep;Geboortedatum;E-mail ouder 1;Toestemming foto's"
    return "\n".join((header, *rows)).encode()


def test_a_child_is_found_by_name_and_date_of_birth_ignoring_case_and_diacritics() -> None:
    known = _known()
    table = read_table(_table("emre;;UNAL;groep 4;01-03-2017;unal@ouders.example.nl;nee"))

    result = plan(table, [known], GROUP_IDS, False, TODAY)

    [entry] = result.entries
    assert (entry.child, entry.action, entry.fields_changed) == (
        known,
        "changed",
        ["given_name", "family_name"],
    )


def test_a_tussenvoegsel_written_in_the_family_name_is_the_same_child() -> None:
    known = _known(
        given_name="Sem",
        tussenvoegsel="van der",
        family_name="Berg",
        emails=frozenset({"b@ouders.example.nl"}),
    )
    table = read_table(_table("Sem;;van der Berg;Groep 4;01-03-2017;b@ouders.example.nl;nee"))

    [entry] = plan(table, [known], GROUP_IDS, False, TODAY).entries

    assert entry.child == known


def test_a_new_group_moves_the_child_and_new_addresses_are_added() -> None:
    known = _known()
    table = read_table(_table("Emre;;Ünal;Groep 5;01-03-2017;nieuw@ouders.example.nl;ja"))

    [entry] = plan(table, [known], GROUP_IDS, False, TODAY).entries

    assert (entry.action, entry.fields_changed, entry.guardians_added) == (
        "moved",
        ["photo_consent"],
        ["nieuw@ouders.example.nl"],
    )


def test_children_of_the_year_missing_from_the_file_are_reported_not_removed() -> None:
    absent = _known(given_name="Ilse")
    table = read_table(_table("Bram;;Bos;Groep 3;01-03-2018;bos@ouders.example.nl;ja"))

    result = plan(table, [absent], GROUP_IDS, False, TODAY)

    assert result.absent == [absent]
    assert [e.action for e in result.entries] == ["created"]


def test_bad_rows_are_named_with_line_column_and_reason() -> None:
    table = read_table(
        _table(
            "Bram;;Bos;Groep 3;01-03-2018;;ja",
            "Ilse;;Vos;Groep 3;01-03-2018;ilse@@ouders.example.nl;ja",
            "Anna;;Smit;Groep 9;01-03-2018;anna@ouders.example.nl;ja",
            "Anna;;Smit;Groep 3;31-02-2018;anna@ouders.example.nl;misschien",
            "Lotte;;Bos;Groep 3;02-03-2018;bos@ouders.example.nl;ja",
            "Lotte;;Bos;Groep 3;02-03-2018;bos@ouders.example.nl;ja",
            "Siem;;Bos;Groep 3;03-03-2018;bos@ouders.example.nl;ja",
            "Siem;;Bos;Groep 4;03-03-2018;bos@ouders.example.nl;ja",
        )
    )

    result = plan(table, [], GROUP_IDS, False, TODAY)

    found = [(e.line, e.column, e.problem.split(":")[0].split(" (")[0]) for e in result.errors]
    assert found == [
        (2, "E-mail ouder 1", "missing email"),
        (3, "E-mail ouder 1", "undeliverable email 'ilse@@ouders.example.nl'"),
        (4, "Groep", "unknown group 'Groep 9' in this school year"),
        (5, "Geboortedatum", "'31-02-2018' is not a date such as 31-12-2018"),
        (5, "Toestemming foto's", "'misschien' is neither ja nor nee"),
        (7, None, "duplicate child"),
        (8, "Groep", "two rows for one child with different groups"),
        (9, "Groep", "two rows for one child with different groups"),
    ]
    assert [e.pupil.line for e in result.entries] == [6]
    assert result.counts().invalid == 7


def test_unknown_groups_are_created_when_asked() -> None:
    table = read_table(
        _table(
            "Bram;;Bos;Groep 9;01-03-2018;bos@ouders.example.nl;ja",
            "Ilse;;Bos;groep 9;01-03-2019;bos@ouders.example.nl;ja",
        )
    )

    result = plan(table, [], GROUP_IDS, True, TODAY)

    assert result.groups_to_create == ["Groep 9"]
    assert result.errors == []


def test_decomposed_diacritics_are_stored_composed() -> None:
    data = "Roepnaam;Achternaam;Groep;E-mail ouder 1\nU\u0308nal;C\u0327elik;Groep 3;a@ouders.example.nl\n".encode()
    values = read_table(data).rows[0].values
    assert (values["given_name"], values["family_name"]) == ("\u00dcnal", "\u00c7elik")
