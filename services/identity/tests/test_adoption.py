"""Adoption figures (seed rule 10) against identity alone: a school counted by hand, as JSON and CSV."""

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.harness.identity_alone import (
    Identity,
    SchoolAlone,
    add_child,
    launch,
    make_school,
    new_email,
    redeem,
    running_identity,
)


@dataclass
class Counted:
    school: SchoolAlone
    # Per group: placed, invited, linked, pending, reached_percent (by hand, see `counted`).
    expected: dict[str, tuple[int, int, int, int, float | None]]


@pytest.fixture(scope="module")
async def identity() -> AsyncIterator[Identity]:
    async with running_identity() as running:
        yield running


@pytest.fixture(scope="module")
async def counted(identity: Identity) -> Counted:
    """Ten children in three groups (and an empty fourth), counted by hand:

    Groep 1: A two guardians, one linked; B invited; C two guardians, both invited; D linked
             -> placed 4, invited 4, linked 2, pending 2, 50.0 %
    Groep 2: E invitation withdrawn; F two guardians, one linked; G linked, then left the school
             -> placed 2 (G left), invited 1, linked 1, pending 1, 50.0 %
    Groep 3: H code expired; I no guardians known; J linked
             -> placed 3, invited 1, linked 1, pending 2, 33.3 %
    Groep 4: nobody -> 0, 0, 0, 0, no percentage
    School:  placed 9, invited 6, linked 4, pending 5, 44.4 %
    """
    school = await make_school(identity, "Groep 1", "Groep 2", "Groep 3", "Groep 4")
    e = {name: new_email(name) for name in ("a1", "a2", "b", "c1", "c2", "d", "e", "f1", "f2", "g", "h", "j")}
    children = {
        "A": await add_child(identity, school, "Groep 1", e["a1"], e["a2"]),
        "B": await add_child(identity, school, "Groep 1", e["b"]),
        "C": await add_child(identity, school, "Groep 1", e["c1"], e["c2"]),
        "D": await add_child(identity, school, "Groep 1", e["d"]),
        "E": await add_child(identity, school, "Groep 2", e["e"]),
        "F": await add_child(identity, school, "Groep 2", e["f1"], e["f2"]),
        "G": await add_child(identity, school, "Groep 2", e["g"]),
        "H": await add_child(identity, school, "Groep 3", e["h"]),
        "I": await add_child(identity, school, "Groep 3"),
        "J": await add_child(identity, school, "Groep 3", e["j"]),
    }
    await launch(identity, school)
    for linked in ("a1", "d", "f2", "g", "j"):
        status, body, _ = await redeem(identity, await identity.code_for(e[linked]))
        assert status == 201, body
    withdrawn = children["E"]["guardians"][0]["guardianship_id"]
    status, _, _ = await identity.call("DELETE", f"/guardianships/{withdrawn}/invitation", school.admin_token)
    assert status == 204
    status, _, _ = await identity.call(
        "POST", f"/children/{children['G']['child_id']}/leave", school.admin_token, json={}
    )
    assert status == 200
    async with identity.pool.acquire() as conn:
        await conn.execute(
            """UPDATE access_codes SET expires_at = now() - interval '1 day'
               WHERE guardianship_id = $1""",
            children["H"]["guardians"][0]["guardianship_id"],
        )
    return Counted(
        school,
        {
            "Groep 1": (4, 4, 2, 2, 50.0),
            "Groep 2": (2, 1, 1, 1, 50.0),
            "Groep 3": (3, 1, 1, 2, 33.3),
            "Groep 4": (0, 0, 0, 0, None),
        },
    )


def figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in ("placed", "invited", "linked", "pending", "reached_percent"))


async def test_adoption_figures_match_a_hand_counted_school(identity: Identity, counted: Counted) -> None:
    school = counted.school
    status, body, _ = await identity.call("GET", f"/schools/{school.school_id}/adoption", school.admin_token)
    assert status == 200, body
    assert body["school_year"] == "2026-2027"
    assert {g["name"]: figures(g) for g in body["groups"]} == counted.expected
    assert [g["name"] for g in body["groups"]] == ["Groep 1", "Groep 2", "Groep 3", "Groep 4"]
    assert {g["group_id"] for g in body["groups"]} == {str(i) for i in school.groups.values()}
    assert figures(body["school"]) == (9, 6, 4, 5, 44.4)


async def test_adoption_as_csv_by_accept_header_or_format_parameter(
    identity: Identity, counted: Counted
) -> None:
    school = counted.school
    path = f"/schools/{school.school_id}/adoption"
    by_header = await identity.call("GET", path, school.admin_token, headers={"Accept": "text/csv"})
    by_param = await identity.call("GET", path, school.admin_token, params={"format": "csv"})
    for status, text, headers in (by_header, by_param):
        assert status == 200, text
        assert headers["Content-Type"].startswith("text/csv")
        assert 'filename="adoption-2026-2027.csv"' in headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(text)))
        assert rows == [
            ["groep", "geplaatst", "uitgenodigd", "gekoppeld", "openstaand", "bereikt_procent"],
            ["Groep 1", "4", "4", "2", "2", "50.0"],
            ["Groep 2", "2", "1", "1", "1", "50.0"],
            ["Groep 3", "3", "1", "1", "2", "33.3"],
            ["Groep 4", "0", "0", "0", "0", ""],
            ["Hele school", "9", "6", "4", "5", "44.4"],
        ]
    # format=json wins over the Accept header.
    status, body, _ = await identity.call(
        "GET", path, school.admin_token, headers={"Accept": "text/csv"}, params={"format": "json"}
    )
    assert status == 200
    assert figures(body["school"]) == (9, 6, 4, 5, 44.4)


async def test_adoption_csv_has_english_headers_for_an_english_school_and_names_kept_as_text(
    identity: Identity,
) -> None:
    school = await make_school(identity, "-1 Peuters", locale="en")
    await add_child(identity, school, "-1 Peuters", new_email("x"))
    status, text, _ = await identity.call(
        "GET", f"/schools/{school.school_id}/adoption", school.admin_token, params={"format": "csv"}
    )
    assert status == 200, text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["group", "placed", "invited", "linked", "pending", "reached_percent"]
    # A spreadsheet would read -1 Peuters as a formula.
    assert rows[1] == ["'-1 Peuters", "1", "0", "0", "1", "0.0"]
    assert rows[2] == ["Whole school", "1", "0", "0", "1", "0.0"]


async def test_adoption_of_another_school_year_and_an_unknown_one(
    identity: Identity, counted: Counted
) -> None:
    school = counted.school
    status, body, _ = await identity.call(
        "POST",
        f"/schools/{school.school_id}/school-years",
        school.admin_token,
        json={"name": "2027-2028", "starts_on": "2027-08-01"},
    )
    assert status == 201, body
    status, group, _ = await identity.call(
        "POST",
        f"/schools/{school.school_id}/groups",
        school.admin_token,
        json={"name": "Groep 2", "school_year": "2027-2028"},
    )
    assert status == 201, group
    school.groups["next"] = uuid.UUID(group["group_id"])
    email = new_email("next")
    await add_child(identity, school, "next", email)
    await identity.code_for(email)  # the school has launched: a placement in a coming year is invited

    path = f"/schools/{school.school_id}/adoption"
    status, body, _ = await identity.call(
        "GET", path, school.admin_token, params={"school_year": "2027-2028"}
    )
    assert status == 200, body
    assert body["school_year"] == "2027-2028"
    assert [(g["name"], figures(g)) for g in body["groups"]] == [("Groep 2", (1, 1, 0, 1, 0.0))]
    status, body, _ = await identity.call("GET", path, school.admin_token)
    assert figures(body["school"]) == (9, 6, 4, 5, 44.4)  # the current year is unchanged

    status, body, _ = await identity.call(
        "GET", path, school.admin_token, params={"school_year": "2030-2031"}
    )
    assert status == 404, body
    status, body, _ = await identity.call("GET", path, school.admin_token, params={"school_year": "2030"})
    assert status == 422, body


async def test_adoption_is_shown_only_to_the_schools_admins(identity: Identity, counted: Counted) -> None:
    other = await make_school(identity)
    status, body, _ = await identity.call(
        "GET", f"/schools/{counted.school.school_id}/adoption", other.admin_token
    )
    assert status == 404, body
    status, body, _ = await identity.call("GET", f"/schools/{counted.school.school_id}/adoption")
    assert status == 401, body


async def test_a_school_without_a_current_year_has_no_adoption_to_show(identity: Identity) -> None:
    school = await make_school(identity)
    async with identity.pool.acquire() as conn:
        await conn.execute("UPDATE schools SET current_year_id = NULL WHERE school_id = $1", school.school_id)
    status, body, _ = await identity.call("GET", f"/schools/{school.school_id}/adoption", school.admin_token)
    assert status == 404, body
