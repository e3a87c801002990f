"""Reading a class-list export (ParnasSys, Esis, Magister) into rows: decoding, delimiter, headers.

Pure functions, no database. What a school's pupil administration exports, in practice:
- UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), or Windows-1252 (Excel's plain
  "CSV" on a Dutch Windows). UTF-16 ("Unicode text"), spreadsheets (.xlsx) and double-encoded text
  ("Ã¼" for "ü") are refused as a wrong encoding, saying which, rather than guessed at.
- Semicolons (Dutch Excel, where the comma is the decimal sign), commas, or tabs.
- Dutch headers whose spelling varies by product and version; they are matched without regard to
  case, spaces, punctuation or diacritics, and a mapping (our field -> their header) overrides them.

Line numbers are those of the file as the admin sees it in a text editor: the header is line 1 and
a quoted field spanning lines counts each of them.
"""

import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from shared.errors import ValidationFailed

# Our fields, in the order a row is read.
FIELDS: Final = (
    "external_id",
    "given_name",
    "tussenvoegsel",
    "family_name",
    "group",
    "date_of_birth",
    "guardian_email_1",
    "guardian_email_2",
    "guardian_email_3",
    "guardian_email_4",
    "photo_consent",
)
GUARDIAN_FIELDS: Final = tuple(f for f in FIELDS if f.startswith("guardian_email_"))
REQUIRED: Final = ("given_name", "family_name", "group")

# Header spellings per field, normalised (see `header_key`), in order of preference: when an export
# has both "roepnaam" and "voornamen", the roepnaam is the name the child is called by.
ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "external_id": (
        "leerlingnummer",
        "leerlingnr",
        "leerlingid",
        "stamnummer",
        "stamnr",
        "studentnummer",
        "externalid",
        "pupilnumber",
        "studentnumber",
        "id",
    ),
    "given_name": ("roepnaam", "voornaam", "voornamen", "givenname", "firstname"),
    "tussenvoegsel": (
        "tussenvoegsel",
        "tussenvoegsels",
        "voorvoegsel",
        "voorvoegsels",
        "voorvoegselachternaam",
        "prefix",
    ),
    "family_name": ("achternaam", "geslachtsnaam", "familienaam", "familyname", "lastname", "surname"),
    "group": ("groep", "klas", "stamgroep", "basisgroep", "groepnaam", "klasnaam", "group", "class"),
    "date_of_birth": ("geboortedatum", "gebdatum", "geboortedag", "dateofbirth", "birthdate", "dob"),
    "photo_consent": (
        "toestemmingfotos",
        "toestemmingfoto",
        "toestemmingbeeldmateriaal",
        "fototoestemming",
        "beeldmateriaal",
        "toestemmingpublicatiefotos",
        "photoconsent",
    ),
}
# "e-mail ouder 1", "E-mailadres verzorger 2", "email ouder/verzorger 1", "Email parent 1", ...
_GUARDIAN_HEADER = re.compile(
    r"^e?mail(?:adres)?(?:ouder|verzorger|ouderverzorger|parent|guardian|voogd)([1-4])$"
)
_GUARDIAN_HEADER_AFTER = re.compile(
    r"^(?:ouder|verzorger|ouderverzorger|parent|guardian)([1-4])e?mail(?:adres)?$"
)

_DELIMITERS: Final = (";", ",", "\t")
_MOJIBAKE = re.compile(
    "[ÃÂ][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]"
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Row:
    """One pupil's line: the line it starts on, and ``values`` by our field name (stripped; only the
    fields the file has a column for)."""

    line: int
    values: dict[str, str]


@dataclass(frozen=True)
class Table:
    """A decoded, split file: rows with values by our field, which header each field came from."""

    encoding: str
    delimiter: str
    columns: dict[str, str]
    rows: list[Row] = field(default_factory=list)


def refuse(problem: str, field_name: str = "(body)") -> ValidationFailed:
    """The 422 for a file that cannot be read at all."""
    return ValidationFailed("the file cannot be imported", [{"field": field_name, "problem": problem}])


def decode(data: bytes) -> tuple[str, str]:
    """The text of the file and the encoding it was in: "utf-8" (with or without BOM) or "windows-1252".

    Raises ValidationFailed (422) for an empty file or one in a wrong encoding, naming it when known.
    """
    if not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise refuse("the file is empty: export the class list with its header line and pupils")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:200].count(b"\x00") > 0:
        raise refuse(
            "wrong encoding: the file is UTF-16 (Excel's 'Unicode text') or not a text file at all; "
            "export it as 'CSV UTF-8' or 'CSV (semicolon separated)'"
        )
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise refuse("wrong encoding: this is an Excel workbook, not a CSV file; save it as 'CSV UTF-8'")
    try:
        text, encoding = data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        try:
            text, encoding = data.decode("windows-1252"), "windows-1252"
        except UnicodeDecodeError as exc:
            raise refuse(
                f"wrong encoding: byte 0x{data[exc.start]:02x} at position {exc.start} is neither UTF-8 "
                "nor Windows-1252; export the file as 'CSV UTF-8'"
            ) from None
    if _CONTROL.search(text):
        raise refuse("wrong encoding: the file holds control characters, so it is not a text CSV file")
    mangled = _MOJIBAKE.search(text)
    if mangled and _repairs(text):
        raise refuse(
            f"wrong encoding: the text was converted twice (it reads {mangled.group()!r} where a letter "
            "such as 'ü' or 'é' was meant); export the file again as 'CSV UTF-8'"
        )
    return text, encoding


def _repairs(text: str) -> bool:
    """Whether reading the text's Windows-1252 bytes as UTF-8 works: the sign of double encoding."""
    try:
        text.encode("windows-1252").decode("utf-8")
    except UnicodeError:
        return False
    return True


def header_key(text: str) -> str:
    """A header as compared: lower case, without diacritics, spaces or punctuation ("E-mail Ouder 1"
    -> "emailouder1", "Toestemming foto's" -> "toestemmingfotos")."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]", "", stripped.casefold())


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    if counts[best] == 0:
        raise refuse(
            "the header line has a single column: separate the columns with semicolons, commas or tabs"
        )
    return best


def match_columns(headers: list[str], mapping: Mapping[str, str] | None = None) -> dict[str, int]:
    """Which column index holds each of our fields. ``mapping`` (our field -> their header) wins over
    the aliases. Raises ValidationFailed naming every unknown field, missing header or missing column."""
    keys = [header_key(h) for h in headers]
    found: dict[str, int] = {}
    problems: list[dict[str, str]] = []
    for ours, theirs in (mapping or {}).items():
        if ours not in FIELDS:
            problems.append(
                {"field": f"mapping.{ours}", "problem": f"not a field; one of {', '.join(FIELDS)}"}
            )
        elif header_key(theirs) not in keys:
            problems.append({"field": f"mapping.{ours}", "problem": f"the file has no column {theirs!r}"})
        else:
            found[ours] = keys.index(header_key(theirs))
    taken = set(found.values())
    for ours, aliases in ALIASES.items():
        if ours in found:
            continue
        for alias in aliases:
            if alias in keys and keys.index(alias) not in taken:
                found[ours] = keys.index(alias)
                taken.add(found[ours])
                break
    for index, key in enumerate(keys):
        match = _GUARDIAN_HEADER.match(key) or _GUARDIAN_HEADER_AFTER.match(key)
        ours = f"guardian_email_{match.group(1)}" if match else ""
        if match and ours not in found and index not in taken:
            found[ours] = index
            taken.add(index)
    for ours in REQUIRED:
        if ours not in found:
            problems.append({"field": ours, "problem": f"no column for {ours}: {_expected(ours)}"})
    if not any(g in found for g in GUARDIAN_FIELDS):
        problems.append(
            {
                "field": "guardian_email_1",
                "problem": "no column with a guardian's email, e.g. 'e-mail ouder 1'",
            }
        )
    if problems:
        raise ValidationFailed("the file's columns cannot be matched", problems)
    return found


def _expected(ours: str) -> str:
    return (
        f"expected a header such as {', '.join(repr(a) for a in ALIASES[ours][:3])}, or map one with mapping"
    )


def _records(reader: Any) -> Iterator[list[str]]:
    """The reader's records; a field past the csv module's size limit (a quote left open swallows
    the rest of the file into one field) is a 422 naming the line where it began, not a 500."""
    while True:
        line = reader.line_num + 1
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise refuse(
                f'line {line}: a field does not end ({exc}); is a quote (") left open on this line?'
            ) from None


def read_table(data: bytes, mapping: Mapping[str, str] | None = None, max_rows: int | None = None) -> Table:
    """The file's rows (blank lines skipped), by our field names.

    Raises ValidationFailed (422): empty, wrong encoding, unmatched columns, no pupils, more than
    ``max_rows`` pupils, or a quote left open at the end.
    """
    text, encoding = decode(data)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = _delimiter(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    headers: list[str] | None = None
    columns: dict[str, int] = {}
    rows: list[Row] = []
    line_before = 0
    for record in _records(reader):
        start, line_before = line_before + 1, reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if headers is None:
            headers = [cell.strip() for cell in record]
            columns = match_columns(headers, mapping)
            continue
        if max_rows is not None and len(rows) >= max_rows:
            raise refuse(f"the file has more than {max_rows} pupils; split it, e.g. by group")
        # NFC: a file from a Mac may spell "ü" as "u" plus a combining diaeresis.
        values = {
            ours: unicodedata.normalize("NFC", record[i].strip()) if i < len(record) else ""
            for ours, i in columns.items()
        }
        rows.append(Row(line=start, values=values))
    if headers is None:
        raise refuse("the file is empty: export the class list with its header line and pupils")
    if not rows:
        raise refuse("the file has a header line but no pupils")
    return Table(
        encoding=encoding,
        delimiter=delimiter,
        columns={ours: headers[i] for ours, i in columns.items()},
        rows=rows,
    )
