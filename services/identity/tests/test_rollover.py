"""Preparing next school year: POST /school-years/{id}/promotion moves whole groups up a grade with
their children (issue 5). Identity's own API and tables, on the whole-system fixture."""

import uuid
from typing import Any

import asyncpg
import pytest

from identity.rollover.domain import promoted_name, why_not_promoted
from shared.app import POOL
from tests.harness.school import School, add_child, add_group, add_school_year, add_staff, make_school
from tests.harness.system import System

NEXT_YEAR = "2027-2028"


def pool(system: System) -> asyncpg.Pool:
    return system.services["identity"].app[POOL]


@pytest.mark.parametrize(
    ("name", "successor"),
    [("Groep 3B", "Groep 4B"), ("groep 7", "groep 8"), ("Groep 3 b", "Groep 4 b"), ("1", "2")],
)
def test_a_group_moves_up_one_grade_keeping_its_letter(name: str, successor: str) -> None:
    assert why_not_promoted(name) is None
    assert promoted_name(name) == successor


@pytest.mark.parametrize(
    ("name", "final_grade", "reason"),
    [
        ("Groep 8", 8, "final_grade"),
        ("Groep 8A", 8, "final_grade"),
        ("Groep 6", 6, "final_grade"),
        ("Groep 1/2A", 8, "combined"),
        ("Kleutergroep", 8, "no_grade"),
        ("Groep 3 (2025)", 8, "no_grade"),
    ],
)
def test_groep_8_combined_groups_and_names_without_a_grade_have_no_default_successor(
    name: str, final_grade: int, reason: str
) -> None:
    assert why_not_promoted(name, final_grade) == reason


async def school_with_groups(system: System) -> School:
    """A school in 2026-2027 with Groep 3B (Anna, Bram; Bram left), Groep 8 (Daan), Groep 1/2A
    (Eva), and next year 2027-2028 made but empty."""
    school = await make_school(system)
    for group in ("Groep 3B", "Groep 8", "Groep 1/2A"):
        await add_group(system, school, group)
    for key, group in (
        ("anna", "Groep 3B"),
        ("bram", "Groep 3B"),
        ("daan", "Groep 8"),
        ("eva", "Groep 1/2A"),
    ):
        await add_child(system, school, key, group, [])
    status, body = await system.call(
        "POST", "identity", f"/children/{school.children['bram']}/leave", school.admin.token, json={}
    )
    assert status == 200, body
    await add_school_year(system, school, NEXT_YEAR)
    return school


async def year_id(system: System, school: School, name: str) -> uuid.UUID:
    found: uuid.UUID = await pool(system).fetchval(
        "SELECT school_year_id FROM school_years WHERE school_id = $1 AND name = $2", school.school_id, name
    )
    return found


async def promote(
    system: System, school: School, body: dict[str, Any], year: str = NEXT_YEAR
) -> tuple[int, Any]:
    target = await year_id(system, school, year)
    return await system.call(
        "POST", "identity", f"/school-years/{target}/promotion", school.admin.token, json=body
    )


async def groups_of(system: System, school: School, year: str) -> dict[str, dict[str, Any]]:
    status, body = await system.call(
        "GET", "identity", f"/schools/{school.school_id}/groups?school_year={year}", school.admin.token
    )
    assert status == 200, body
    return {g["name"]: g for g in body["items"]}


async def placements_in(system: System, school: School, year: str) -> dict[uuid.UUID, str]:
    rows = await pool(system).fetch(
        """SELECT p.child_id, g.name FROM placements p JOIN groups g USING (group_id)
           JOIN school_years y ON y.school_year_id = p.school_year_id
           WHERE y.school_id = $1 AND y.name = $2""",
        school.school_id,
        year,
    )
    return {r["child_id"]: r["name"] for r in rows}


async def test_promotion_makes_next_years_groups_and_places_their_children_but_not_groep_8(
    system: System,
) -> None:
    school = await school_with_groups(system)

    status, plan = await promote(system, school, {"from_school_year": "2026-2027"})

    assert status == 200, plan
    assert (plan["from_school_year"], plan["to_school_year"], plan["dry_run"]) == (
        "2026-2027",
        NEXT_YEAR,
        False,
    )
    [group] = plan["groups"]
    assert (group["from_name"], group["name"], group["new"]) == ("Groep 3B", "Groep 4B", True)
    assert (group["children_placed"], group["children_already_placed"]) == (1, 0)
    assert {(g["name"], g["reason"], g["children"]) for g in plan["not_promoted"]} == {
        ("Groep 8", "final_grade", 1),
        ("Groep 1/2A", "combined", 1),
    }
    next_groups = await groups_of(system, school, NEXT_YEAR)
    assert set(next_groups) == {"Groep 4B"}
    assert next_groups["Groep 4B"]["group_id"] == group["group_id"]
    assert next_groups["Groep 4B"]["children"] == 1
    # Anna moves up; Bram left and Daan finishes groep 8: neither is placed next year.
    assert await placements_in(system, school, NEXT_YEAR) == {school.children["anna"]: "Groep 4B"}
    promoted_from = await pool(system).fetchval(
        "SELECT promoted_from FROM groups WHERE group_id = $1", uuid.UUID(group["group_id"])
    )
    assert promoted_from == school.groups["Groep 3B"]
    # The other services learn of the new group; nobody's access changes before the switch.
    published = await pool(system).fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'identity.group_changed' AND envelope->'payload'->>'group_id' = $1",
        group["group_id"],
    )
    assert published == 1


async def test_the_source_year_defaults_to_the_year_before(system: System) -> None:
    school = await school_with_groups(system)

    status, plan = await promote(system, school, {})

    assert status == 200, plan
    assert plan["from_school_year"] == "2026-2027"
    assert [g["name"] for g in plan["groups"]] == ["Groep 4B"]


async def test_a_dry_run_answers_the_plan_and_changes_nothing(system: System) -> None:
    school = await school_with_groups(system)

    status, dry = await promote(system, school, {"from_school_year": "2026-2027", "dry_run": True})

    assert status == 200, dry
    assert dry["dry_run"] is True
    assert [(g["name"], g["new"], g["children_placed"]) for g in dry["groups"]] == [("Groep 4B", True, 1)]
    assert await groups_of(system, school, NEXT_YEAR) == {}
    assert await placements_in(system, school, NEXT_YEAR) == {}
    status, done = await promote(system, school, {"from_school_year": "2026-2027"})
    assert status == 200, done
    assert [(g["name"], g["children_placed"]) for g in done["groups"]] == [("Groep 4B", 1)]


async def test_running_the_promotion_twice_creates_nothing_twice(system: System) -> None:
    school = await school_with_groups(system)
    status, first = await promote(system, school, {"from_school_year": "2026-2027"})
    assert status == 200, first
    events_before = await pool(system).fetchval("SELECT count(*) FROM outbox")

    status, second = await promote(system, school, {"from_school_year": "2026-2027"})

    assert status == 200, second
    [group] = second["groups"]
    assert group["group_id"] == first["groups"][0]["group_id"]
    assert (group["new"], group["children_placed"], group["children_already_placed"]) == (False, 0, 1)
    assert set(await groups_of(system, school, NEXT_YEAR)) == {"Groep 4B"}
    assert len(await placements_in(system, school, NEXT_YEAR)) == 1
    assert await pool(system).fetchval("SELECT count(*) FROM outbox") == events_before


async def test_an_admin_renames_leaves_out_and_gives_teachers(system: System) -> None:
    school = await school_with_groups(system)
    await add_group(system, school, "Groep 5A")
    await add_child(system, school, "fenna", "Groep 5A", [])
    teacher = await add_staff(system, school, "meester")

    status, plan = await promote(
        system,
        school,
        {
            "groups": [
                {
                    "from_group_id": str(school.groups["Groep 3B"]),
                    "name": "Groep 4C",
                    "teachers": [str(teacher.person_id)],
                },
                {"from_group_id": str(school.groups["Groep 1/2A"]), "name": "Groep 2/3"},
            ],
            "leave_out": [str(school.groups["Groep 5A"])],
        },
    )

    assert status == 200, plan
    assert {g["name"]: g["teachers"] for g in plan["groups"]} == {
        "Groep 4C": [str(teacher.person_id)],
        "Groep 2/3": [],
    }
    assert {g["name"]: g["reason"] for g in plan["not_promoted"]} == {
        "Groep 5A": "left_out",
        "Groep 8": "final_grade",
    }
    next_groups = await groups_of(system, school, NEXT_YEAR)
    assert next_groups["Groep 4C"]["teachers"] == [str(teacher.person_id)]
    assert await placements_in(system, school, NEXT_YEAR) == {
        school.children["anna"]: "Groep 4C",
        school.children["eva"]: "Groep 2/3",
    }


async def test_a_child_placed_next_year_already_keeps_that_placement(system: System) -> None:
    school = await school_with_groups(system)
    await add_child(system, school, "gijs", "Groep 3B", [])
    # Gijs stays in groep 3 (doubleren): the admin placed him before the promotion.
    held_back = await add_group(system, school, "Groep 3A", NEXT_YEAR)
    status, body = await system.call(
        "PUT",
        "identity",
        f"/children/{school.children['gijs']}/placement",
        school.admin.token,
        json={"group_id": str(held_back)},
    )
    assert status == 200, body

    status, plan = await promote(system, school, {})

    assert status == 200, plan
    [group] = plan["groups"]
    assert (group["children_placed"], group["children_already_placed"]) == (1, 1)
    assert await placements_in(system, school, NEXT_YEAR) == {
        school.children["anna"]: "Groep 4B",
        school.children["gijs"]: "Groep 3A",
    }


async def test_a_group_made_by_hand_without_children_is_taken_over(system: System) -> None:
    school = await school_with_groups(system)
    by_hand = await add_group(system, school, "Groep 4B", NEXT_YEAR)

    status, plan = await promote(system, school, {})

    assert status == 200, plan
    assert plan["groups"][0]["group_id"] == str(by_hand)
    assert plan["groups"][0]["new"] is False
    assert await placements_in(system, school, NEXT_YEAR) == {school.children["anna"]: "Groep 4B"}


async def test_a_group_of_that_name_holding_other_children_is_refused_and_nothing_is_written(
    system: System,
) -> None:
    school = await school_with_groups(system)
    await add_group(system, school, "Groep 5A")
    await add_group(system, school, "Groep 4B", NEXT_YEAR)
    await add_child(system, school, "nieuw", "Groep 4B", [])
    before = await placements_in(system, school, NEXT_YEAR)

    status, body = await promote(system, school, {})

    assert status == 409, body
    assert body["error"]["code"] == "conflict"
    assert "Groep 4B" in body["error"]["message"]
    assert set(await groups_of(system, school, NEXT_YEAR)) == {"Groep 4B"}  # no Groep 6A either
    assert await placements_in(system, school, NEXT_YEAR) == before


async def test_a_group_promoted_once_cannot_be_promoted_again_under_another_name(system: System) -> None:
    school = await school_with_groups(system)
    status, body = await promote(system, school, {})
    assert status == 200, body

    status, body = await promote(
        system, school, {"groups": [{"from_group_id": str(school.groups["Groep 3B"]), "name": "Groep 4Z"}]}
    )

    assert status == 409, body
    assert "Groep 4B" in body["error"]["message"]
    assert set(await groups_of(system, school, NEXT_YEAR)) == {"Groep 4B"}


async def test_a_target_year_that_does_not_start_after_the_source_year_is_refused(system: System) -> None:
    school = await school_with_groups(system)

    for target, source in (("2026-2027", NEXT_YEAR), ("2026-2027", "2026-2027")):
        status, body = await promote(system, school, {"from_school_year": source}, year=target)
        assert status == 422, body
        assert body["error"]["details"][0]["field"] == "from_school_year"
    status, body = await promote(system, school, {}, year="2026-2027")
    assert status == 422, body  # no year before it
    status, body = await promote(system, school, {"from_school_year": "2019-2020"})
    assert status == 422, body
    assert await groups_of(system, school, NEXT_YEAR) == {}


async def test_plans_that_do_not_fit_the_source_year_are_refused_naming_the_field(system: System) -> None:
    school = await school_with_groups(system)
    other = await make_school(system, "Een andere school")
    stranger = await add_staff(system, other, "vreemde")
    group_3b = str(school.groups["Groep 3B"])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"groups": [{"from_group_id": str(uuid.uuid4()), "name": "Groep 4B"}]}, "groups.0.from_group_id"),
        ({"leave_out": [str(uuid.uuid4())]}, "leave_out.0"),
        ({"groups": [{"from_group_id": group_3b, "name": "X"}], "leave_out": [group_3b]}, "leave_out.0"),
        (
            {
                "groups": [
                    {"from_group_id": group_3b, "name": "Groep 9"},
                    {"from_group_id": str(school.groups["Groep 8"]), "name": "Groep 9"},
                ]
            },
            "groups",
        ),
        (
            {
                "groups": [
                    {"from_group_id": group_3b, "name": "Groep 4B", "teachers": [str(stranger.person_id)]}
                ]
            },
            "groups.0.teachers",
        ),
    ]
    for body_json, field in cases:
        status, body = await promote(system, school, body_json)
        assert status == 422, (body_json, body)
        assert body["error"]["details"][0]["field"] == field, body
    assert await groups_of(system, school, NEXT_YEAR) == {}


async def test_only_an_admin_of_the_school_may_promote_its_years(system: System) -> None:
    school = await school_with_groups(system)
    other = await make_school(system, "Een andere school")
    target = await year_id(system, school, NEXT_YEAR)

    status, body = await system.call(
        "POST", "identity", f"/school-years/{target}/promotion", other.admin.token, json={}
    )

    assert status == 404, body
    assert await groups_of(system, school, NEXT_YEAR) == {}
