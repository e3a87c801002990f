"""Realistic class-list exports (as ParnasSys, Esis or Magister write them) for tests and benchmarks.

Dutch and Dutch-Turkish/Moroccan names with tussenvoegsels and diacritics, families whose children
share the guardians' addresses, groups 1/2 to 8, dates as dd-mm-yyyy. Deterministic for a seed.
"""

import random
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

GIVEN = (
    "Emma",
    "Daan",
    "Sophie",
    "Sem",
    "Julia",
    "Lucas",
    "Mila",
    "Noah",
    "Zoë",
    "Liam",
    "Tess",
    "Finn",
    "Anaïs",
    "Thijs",
    "Chloë",
    "Ruben",
    "Noëlle",
    "Jesse",
    "Fleur",
    "Bram",
    "Ayşe",
    "Mehmet",
    "Yusuf",
    "Fatma",
    "Elif",
    "Mohammed",
    "Salma",
    "Imane",
    "Björn",
    "Renée",
    "José",
    "François",
    "Lotte",
    "Siem",
)
FAMILY = (
    ("", "Jansen"),
    ("de", "Vries"),
    ("van den", "Berg"),
    ("van der", "Berg"),
    ("", "Bakker"),
    ("", "Visser"),
    ("", "Smit"),
    ("", "Meijer"),
    ("de", "Boer"),
    ("", "Mulder"),
    ("de", "Groot"),
    ("", "Bos"),
    ("", "Vos"),
    ("", "Peters"),
    ("", "Hendriks"),
    ("van", "Leeuwen"),
    ("van", "Dijk"),
    ("", "Ünal"),
    ("", "Çelik"),
    ("", "Yılmaz"),  # noqa: RUF001 - the Turkish dotless i, on purpose
    ("", "Öztürk"),
    ("el", "Amrani"),
    ("", "Boukhari"),
    ("", "Müller"),
    ("", "Gündoğdu"),
    ("ter", "Horst"),
    ("in 't", "Veld"),
    ("", "Ağaoğlu"),
    ("", "Noë"),
)
GROUPS = ("Groep 1/2A", "Groep 1/2B", "Groep 3", "Groep 4", "Groep 5", "Groep 6", "Groep 7", "Groep 8")
PARNASSYS_HEADER = (
    "Leerlingnummer",
    "Roepnaam",
    "Tussenvoegsel",
    "Achternaam",
    "Groep",
    "Geboortedatum",
    "E-mail ouder 1",
    "E-mail ouder 2",
    "Toestemming foto's",
)


@dataclass(frozen=True)
class Pupil:
    number: str
    given: str
    tussenvoegsel: str
    family: str
    group: str
    born: date
    email_1: str
    email_2: str
    consent: str

    def cells(self) -> list[str]:
        return [
            self.number,
            self.given,
            self.tussenvoegsel,
            self.family,
            self.group,
            self.born.strftime("%d-%m-%Y"),
            self.email_1,
            self.email_2,
            self.consent,
        ]


@dataclass
class ClassList:
    """Rows of an export; ``render`` writes them as bytes."""

    header: tuple[str, ...] = PARNASSYS_HEADER
    rows: list[list[str]] = field(default_factory=list)

    def render(self, delimiter: str = ";", encoding: str = "utf-8-sig", newline: str = "\r\n") -> bytes:
        def cell(text: str) -> str:
            if delimiter in text or '"' in text or "\n" in text:
                return '"' + text.replace('"', '""') + '"'
            return text

        lines = [delimiter.join(cell(c) for c in self.header)]
        lines += [delimiter.join(cell(c) for c in row) for row in self.rows]
        return (newline.join(lines) + newline).encode(encoding)


def _cp1252_safe(text: str) -> bool:
    try:
        text.encode("windows-1252")
    except UnicodeEncodeError:
        return False
    return True


def pupils(
    count: int, seed: int = 5, cp1252_only: bool = False, domain: str = "ouders.example.nl"
) -> list[Pupil]:
    """``count`` distinct pupils in families of 1 to 3 children sharing both guardians' addresses.
    ``cp1252_only``: only names Windows-1252 can hold (a real Windows-1252 export has no Turkish dotless i or g with breve)."""
    rng = random.Random(seed)
    given = [g for g in GIVEN if not cp1252_only or _cp1252_safe(g)]
    family_names = [f for f in FAMILY if not cp1252_only or _cp1252_safe(f[1])]
    result: list[Pupil] = []
    family_no = 0
    while len(result) < count:
        family_no += 1
        tussenvoegsel, family = rng.choice(family_names)
        slug = f"{family.lower().encode('ascii', 'ignore').decode() or 'ouder'}{family_no}"
        email_1 = f"{slug}.a@{domain}"
        email_2 = f"{slug}.b@{domain}" if rng.random() < 0.7 else ""
        for _ in range(min(rng.choice((1, 1, 2, 2, 3)), count - len(result))):
            born = date(2014, 9, 1) + timedelta(days=rng.randrange(0, 8 * 365))
            grade = max(0, min(7, (date(2022, 9, 30) - born).days // 365))
            result.append(
                Pupil(
                    number=str(100000 + len(result)),
                    given=rng.choice(given),
                    tussenvoegsel=tussenvoegsel,
                    family=family,
                    group=GROUPS[grade] if grade > 1 else GROUPS[rng.randrange(0, 2)],
                    born=born,
                    email_1=email_1,
                    email_2=email_2,
                    consent=rng.choice(("ja", "ja", "nee", "Ja", "JA")),
                )
            )
    return result


def class_list(people: list[Pupil]) -> ClassList:
    return ClassList(rows=[p.cells() for p in people])


__all__ = ["GROUPS", "PARNASSYS_HEADER", "ClassList", "Pupil", "class_list", "pupils", "replace"]
