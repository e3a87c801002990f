"""Class-list import: what a row means, and the plan of what an import would do (issue 5).

A child is the same child when the pupil administration's number (external_id) matches, else when
given name, tussenvoegsel + family name and date of birth match within the school, ignoring case,
spaces and diacritics ("van der Berg" with an empty tussenvoegsel is "van der" + "Berg"). A file
row is one of:
- created: no such child yet;
- moved: the child's group in the import's school year is another one (or none yet);
- changed: same group, but names, date of birth, photo consent, number or guardians differ (or the
  child had left and is back on the list);
- unchanged: nothing to write — so applying the same file twice changes nothing the second time;
- an error: the row is named with its line and the reason, and never written.
Guardians in the file are added; a guardian the school has that the file lacks is kept (removing
one is a deliberate act). Children placed in the year but absent from the file are reported, not
taken out: leaving is a deliberate act as well (POST /children/{id}/leave).
"""

import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from identity.emails import normalise_email
from identity.imports.parsing import FIELDS, GUARDIAN_FIELDS, Row, Table
from identity.schools.domain import SchoolYearName
from shared.fields import Matches, QueryBool

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 5000
# A running import writes its progress at least this often; one silent for STALE_SECONDS has died
# with its process (nothing was written: the apply is one transaction) and is marked failed.
HEARTBEAT_SECONDS = 2.0
STALE_SECONDS = 60
ImportStatus = Literal["queued", "running", "done", "failed"]
Action = Literal["created", "changed", "moved", "unchanged"]
_NAME_LIMITS = {"given_name": 100, "family_name": 100, "tussenvoegsel": 20, "external_id": 40}
_YES = {"ja", "j", "yes", "y", "true", "1", "x", "akkoord", "wel"}
_NO = {"nee", "n", "no", "false", "0", "", "geen", "niet"}
_DATE_FORMATS = ("%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%y")


# A JSON object of strings to strings, as JSON spells it (RFC 8259: its whitespace, its escapes).
_JSON_SPACE = "[ \\t\\n\\r]*"
_JSON_STRING = '"(?:[^"\\\\\\x00-\\x1f]|\\\\["\\\\/bfnrt]|\\\\u[0-9A-Fa-f]{4})*"'
_JSON_PAIR = f"{_JSON_STRING}{_JSON_SPACE}:{_JSON_SPACE}{_JSON_STRING}"
MAPPING_PATTERN = f"^{_JSON_SPACE}\\{{{_JSON_SPACE}(?:{_JSON_PAIR}{_JSON_SPACE}(?:,{_JSON_SPACE}{_JSON_PAIR}{_JSON_SPACE})*)?\\}}{_JSON_SPACE}$"


class ImportQuery(BaseModel):
    """How to import: see the route's description."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    dry_run: QueryBool = Field(default=True, description="Only report what would happen (the default).")
    school_year: SchoolYearName | None = Field(
        default=None, description="The year whose groups the file names; default the current year."
    )
    skip_invalid: QueryBool = Field(
        default=False,
        description="Apply the valid rows although some are not; otherwise apply refuses (422).",
    )
    create_groups: QueryBool = Field(default=False, description="Create groups the year does not have yet.")
    mapping: (
        Annotated[str, Matches(MAPPING_PATTERN, "not a JSON object of field names to header names")] | None
    ) = Field(
        default=None,
        max_length=2000,
        description="A JSON object (in the parameter's text) naming, for a field of ours, the file's "
        'header that holds it, e.g. {"group": "Jaargroep"}; headers the file has are recognised '
        f"without it. Fields: {', '.join(FIELDS)}.",
    )

    @field_validator("mapping")
    @classmethod
    def json_object(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parsed = json.loads(value)
            except ValueError:
                raise ValueError('not JSON; send an object such as {"group": "Jaargroep"}') from None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
            ):
                raise ValueError("must be a JSON object of field names to header names")
        return value

    def mapping_dict(self) -> dict[str, str]:
        parsed: dict[str, str] = json.loads(self.mapping) if self.mapping else {}
        return parsed


class RowProblem(BaseModel):
    line: int = Field(description="1-based line in the file; the header is line 1.")
    column: str | None = Field(description="The file's header of the column at fault, if one.")
    problem: str


class PlannedChild(BaseModel):
    line: int
    action: Action
    child_id: uuid.UUID | None = Field(description="None for a child the import would create.")
    name: str
    group: str
    previous_group: str | None
    fields_changed: list[str]
    guardians_added: list[str]


class AbsentChild(BaseModel):
    child_id: uuid.UUID
    name: str
    group: str


class ImportCounts(BaseModel):
    created: int = 0
    changed: int = 0
    moved: int = 0
    unchanged: int = 0
    invalid: int = Field(default=0, description="Rows with a problem (never written).")
    guardians_added: int = 0
    groups_created: int = 0
    not_in_file: int = Field(default=0, description="Children placed in the year whom the file lacks.")
    invited: int = Field(default=0, description="Invitations sent on apply (once the school invites).")


class ImportView(BaseModel):
    import_id: uuid.UUID
    school_id: uuid.UUID
    school_year: str
    status: ImportStatus
    dry_run: bool
    skip_invalid: bool
    create_groups: bool
    applied: bool = Field(description="The changes were written (in one transaction).")
    encoding: str
    delimiter: str
    columns: dict[str, str] = Field(description="Our field -> the file's header it was read from.")
    rows_total: int
    rows_done: int
    counts: ImportCounts
    errors: list[RowProblem]
    children: list[PlannedChild] = Field(description="Every row that creates, changes or moves a child.")
    not_in_file: list[AbsentChild]
    failure: str | None = Field(description="Why a failed import failed; nothing was written.")
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Pupil:
    """A row's values once checked. ``photo_consent`` None: the file says nothing about it."""

    line: int
    external_id: str | None
    given_name: str
    tussenvoegsel: str
    family_name: str
    date_of_birth: date | None
    photo_consent: bool | None
    group: str
    emails: list[str]


@dataclass(frozen=True)
class KnownChild:
    """A child of the school as stored, with their group in the import's year and guardian addresses."""

    child_id: uuid.UUID
    external_id: str | None
    given_name: str
    tussenvoegsel: str
    family_name: str
    date_of_birth: date | None
    photo_consent: bool
    left_on: date | None
    group_id: uuid.UUID | None
    group: str | None
    emails: frozenset[str]


@dataclass
class Entry:
    pupil: Pupil
    child: KnownChild | None
    action: Action
    fields_changed: list[str]
    guardians_added: list[str]
    group_id: uuid.UUID | None = None


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    errors: list[RowProblem] = field(default_factory=list)
    groups_to_create: list[str] = field(default_factory=list)
    absent: list[KnownChild] = field(default_factory=list)
    invalid_lines: set[int] = field(default_factory=set)

    def counts(self) -> ImportCounts:
        counts = ImportCounts(
            invalid=len(self.invalid_lines),
            guardians_added=sum(len(e.guardians_added) for e in self.entries),
            groups_created=len(self.groups_to_create),
            not_in_file=len(self.absent),
        )
        for entry in self.entries:
            setattr(counts, entry.action, getattr(counts, entry.action) + 1)
        return counts

    def children(self) -> list[PlannedChild]:
        return [
            PlannedChild(
                line=e.pupil.line,
                action=e.action,
                child_id=e.child.child_id if e.child else None,
                name=full_name(e.pupil.given_name, e.pupil.tussenvoegsel, e.pupil.family_name),
                group=e.pupil.group,
                previous_group=e.child.group if e.child else None,
                fields_changed=e.fields_changed,
                guardians_added=e.guardians_added,
            )
            for e in self.entries
            if e.action != "unchanged"
        ]

    def not_in_file(self) -> list[AbsentChild]:
        return [
            AbsentChild(
                child_id=c.child_id,
                name=full_name(c.given_name, c.tussenvoegsel, c.family_name),
                group=c.group or "",
            )
            for c in self.absent
        ]


def full_name(given: str, tussenvoegsel: str, family: str) -> str:
    return " ".join(part for part in (given, tussenvoegsel, family) if part)


def fold(text: str) -> str:
    """For comparing names: lower case, no diacritics, single spaces ("Ünal " -> "unal")."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def name_key(given: str, tussenvoegsel: str, family: str) -> str:
    return f"{fold(given)}|{fold(tussenvoegsel + ' ' + family)}"


def group_key(name: str) -> str:
    """Groups match by name ignoring case, spaces and a leading "groep"/"klas": "3b" is "Groep 3B"."""
    return re.sub(r"^(groep|klas)\s*", "", fold(name))


def parse_date(text: str) -> date:
    """dd-mm-yyyy (the Dutch exports), yyyy-mm-dd, dd/mm/yyyy or dd.mm.yyyy; ValueError otherwise."""
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date such as 31-12-2018")


def check_row(
    row: Row, columns: Mapping[str, str], today: date, addresses: dict[str, str | ValueError] | None = None
) -> tuple[Pupil | None, list[RowProblem]]:
    """The pupil of a row, or every problem with it (``columns``: our field -> the file's header).
    ``addresses`` caches checked addresses across rows: siblings share them, and checking one takes
    a while (email-validator)."""
    checked = {} if addresses is None else addresses
    values = row.values
    problems: list[RowProblem] = []

    def problem(field_name: str | None, text: str) -> None:
        problems.append(RowProblem(line=row.line, column=columns.get(field_name or ""), problem=text))

    for name, limit in _NAME_LIMITS.items():
        if len(values.get(name, "")) > limit:
            problem(name, f"longer than {limit} characters")
    for name in ("given_name", "family_name", "group"):
        if not values.get(name):
            problem(name, f"missing {name.replace('_', ' ')}")
    if any("\x00" in v for v in values.values()):
        problem(None, "contains a NUL character")
    born: date | None = None
    if values.get("date_of_birth"):
        try:
            born = parse_date(values["date_of_birth"])
            if not date(1990, 1, 1) <= born <= today:
                problem(
                    "date_of_birth", f"{values['date_of_birth']} is not a plausible date of birth for a pupil"
                )
        except ValueError as exc:
            problem("date_of_birth", str(exc))
    consent: bool | None = None
    if "photo_consent" in values:
        answer = fold(values["photo_consent"])
        if answer not in _YES | _NO:
            problem("photo_consent", f"{values['photo_consent']!r} is neither ja nor nee")
        consent = answer in _YES
    emails: list[str] = []
    for name in GUARDIAN_FIELDS:
        text = values.get(name, "")
        if not text:
            continue
        if text not in checked:
            try:
                checked[text] = normalise_email(text)
            except ValueError as exc:
                checked[text] = exc
        email = checked[text]
        if isinstance(email, ValueError):
            reason = str(email).removeprefix("not a deliverable email address: ")
            problem(name, f"undeliverable email {text!r}: {reason}")
            continue
        if email.lower() not in {e.lower() for e in emails}:
            emails.append(email)
    if not emails and not any(p.column in {columns.get(g) for g in GUARDIAN_FIELDS} for p in problems):
        problem(
            next((g for g in GUARDIAN_FIELDS if g in columns), None),
            "missing email: the child has no guardian's email",
        )
    if problems:
        return None, problems
    return (
        Pupil(
            line=row.line,
            external_id=values.get("external_id") or None,
            given_name=values["given_name"],
            tussenvoegsel=values.get("tussenvoegsel", ""),
            family_name=values["family_name"],
            date_of_birth=born,
            photo_consent=consent,
            group=values["group"],
            emails=emails,
        ),
        [],
    )


class _Index:
    """The school's children, findable by number and by name."""

    def __init__(self, children: Iterable[KnownChild]) -> None:
        self.by_number: dict[str, KnownChild] = {}
        self.by_name: dict[str, list[KnownChild]] = {}
        for child in children:
            if child.external_id:
                self.by_number[child.external_id.casefold()] = child
            self.by_name.setdefault(
                name_key(child.given_name, child.tussenvoegsel, child.family_name), []
            ).append(child)

    def find(self, pupil: Pupil) -> tuple[KnownChild | None, str | None]:
        """The child the row is about (or None: a new one), or why that cannot be told."""
        if pupil.external_id and pupil.external_id.casefold() in self.by_number:
            return self.by_number[pupil.external_id.casefold()], None
        candidates = [
            c
            for c in self.by_name.get(name_key(pupil.given_name, pupil.tussenvoegsel, pupil.family_name), [])
            if not (pupil.external_id and c.external_id)
            and (
                c.date_of_birth is None
                or pupil.date_of_birth is None
                or c.date_of_birth == pupil.date_of_birth
            )
        ]
        exact = [c for c in candidates if c.date_of_birth == pupil.date_of_birth]
        if len(candidates) > 1 and len(exact) != 1:
            return None, (
                f"the school has {len(candidates)} children called "
                f"{full_name(pupil.given_name, pupil.tussenvoegsel, pupil.family_name)}: "
                "add their leerlingnummer or date of birth to tell them apart"
            )
        return (exact[0] if len(exact) == 1 else candidates[0] if candidates else None), None


def _identity(pupil: Pupil, child: KnownChild | None) -> str:
    if child is not None:
        return f"child:{child.child_id}"
    if pupil.external_id:
        return f"number:{pupil.external_id.casefold()}"
    born = pupil.date_of_birth.isoformat() if pupil.date_of_birth else ""
    return f"name:{name_key(pupil.given_name, pupil.tussenvoegsel, pupil.family_name)}|{born}"


CheckedRows = list[tuple[Pupil | None, list[RowProblem]]]


def check_rows(table: Table, today: date) -> CheckedRows:
    """Every row checked on its own (the slow part of a plan, and independent of the database)."""
    addresses: dict[str, str | ValueError] = {}
    return [check_row(row, table.columns, today, addresses) for row in table.rows]


def plan(
    table: Table,
    children: Iterable[KnownChild],
    groups: Mapping[str, uuid.UUID],
    create_groups: bool,
    today: date,
    rows: CheckedRows | None = None,
) -> Plan:
    """What importing ``table`` would do to the school's ``children`` given the year's ``groups``
    (name -> id); every problem is named with its line. Rows for one child are an error: all of
    them when their groups differ (which one is right?), the later ones when they are copies.
    ``rows``: the table's ``check_rows`` when made already."""
    known = list(children)
    index = _Index(known)
    by_group_key = _group_lookup(groups)
    result = Plan()
    checked: list[tuple[Pupil, KnownChild | None]] = []

    def fail(line: int, column_field: str | None, text: str) -> None:
        result.errors.append(
            RowProblem(line=line, column=table.columns.get(column_field or ""), problem=text)
        )
        result.invalid_lines.add(line)

    for row, (pupil, problems) in zip(table.rows, rows or check_rows(table, today), strict=True):
        if pupil is None:
            result.errors.extend(problems)
            result.invalid_lines.add(row.line)
            continue
        child, ambiguous = index.find(pupil)
        if ambiguous:
            fail(pupil.line, "family_name", ambiguous)
            continue
        if _find(by_group_key, pupil.group) is None and not create_groups:
            fail(
                pupil.line,
                "group",
                f"unknown group {pupil.group!r} in this school year (create it first, or import with create_groups=true)",
            )
            continue
        checked.append((pupil, child))

    rows_of: dict[str, list[tuple[Pupil, KnownChild | None]]] = {}
    for pupil, child in checked:
        rows_of.setdefault(_identity(pupil, child), []).append((pupil, child))
    matched: set[uuid.UUID] = set()
    new_groups: dict[str, str] = {}
    for same in rows_of.values():
        first, child = same[0]
        if child is not None:
            matched.add(child.child_id)
        if len(same) > 1:
            lines = ", ".join(str(p.line) for p, _ in same)
            if len({group_key(p.group) for p, _ in same}) > 1:
                for p, _ in same:
                    groups_named = ", ".join(f"line {q.line}: {q.group}" for q, _ in same)
                    fail(p.line, "group", f"two rows for one child with different groups ({groups_named})")
                continue
            for p, _ in same[1:]:
                fail(p.line, None, f"duplicate child: {_who(p)} is on lines {lines}")
        group_id = _find(by_group_key, first.group)
        if group_id is None:
            new_groups.setdefault(group_key(first.group), first.group)
        result.entries.append(_entry(first, child, group_id))
    result.groups_to_create = sorted(new_groups.values())
    result.errors.sort(key=lambda p: p.line)
    result.entries.sort(key=lambda e: e.pupil.line)
    result.absent = [
        c for c in known if c.group_id is not None and c.left_on is None and c.child_id not in matched
    ]
    return result


def _who(pupil: Pupil) -> str:
    name = full_name(pupil.given_name, pupil.tussenvoegsel, pupil.family_name)
    return f"{name} ({pupil.external_id})" if pupil.external_id else name


def _group_lookup(groups: Mapping[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    """Group key -> id; an exact (case-folded) name wins over one without its "groep" prefix."""
    lookup = {group_key(name): gid for name, gid in groups.items()}
    lookup.update({fold(name): gid for name, gid in groups.items()})
    return lookup


def _find(lookup: Mapping[str, uuid.UUID], name: str) -> uuid.UUID | None:
    return lookup.get(fold(name)) or lookup.get(group_key(name))


def _entry(pupil: Pupil, child: KnownChild | None, group_id: uuid.UUID | None) -> Entry:
    """The row's effect; ``group_id`` None: a group the import creates."""
    if child is None:
        return Entry(pupil, None, "created", [], list(pupil.emails), group_id)
    changed = [
        name
        for name, theirs, ours in (
            ("given_name", pupil.given_name, child.given_name),
            ("tussenvoegsel", pupil.tussenvoegsel, child.tussenvoegsel),
            ("family_name", pupil.family_name, child.family_name),
        )
        if theirs != ours
    ]
    if pupil.date_of_birth is not None and pupil.date_of_birth != child.date_of_birth:
        changed.append("date_of_birth")
    if pupil.photo_consent is not None and pupil.photo_consent != child.photo_consent:
        changed.append("photo_consent")
    if pupil.external_id and not child.external_id:
        changed.append("external_id")
    if child.left_on is not None:
        changed.append("left_on")
    added = [e for e in pupil.emails if e.lower() not in child.emails]
    moved = group_id is None or child.group_id != group_id
    action: Action = "moved" if moved else "changed" if changed or added else "unchanged"
    return Entry(pupil, child, action, changed, added, group_id)
