"""Class-list import end to end against identity with its own database (issue 5): POST the CSV,
follow the job, check what was written. Identity runs alone (tests.harness.identity_alone), its
events caught from the broker."""

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from identity.imports.domain import MAX_BYTES
from identity.imports.runner import RUNNING_AT_ONCE
from shared.testing.class_lists import GROUPS, ClassList, Pupil, class_list, pupils, replace
from tests.harness.identity_alone import PASSWORD, Identity, running_identity
from tests.harness.system import OPERATOR_KEY

YEAR = "2026-2027"


@dataclass
class School:
    school_id: uuid.UUID
    token: str
    groups: dict[str, uuid.UUID] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def identity() -> AsyncIterator[Identity]:
    async with running_identity() as running:
        yield running


async def call(
    identity: Identity, method: str, path: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    status, body, _ = await identity.call(method, path, token, **kwargs)
    return status, body


async def new_school(identity: Identity, groups: tuple[str, ...] = GROUPS, launch: bool = True) -> School:
    """A school with its admin logged in, the current year 2026-2027 and its groups."""
    admin = f"admin.{uuid.uuid4().hex[:8]}@school.example.nl"
    status, body = await call(
        identity,
        "POST",
        "/schools",
        headers={"X-Operator-Key": OPERATOR_KEY},
        json={
            "name": "OBS De Regenboog",
            "admin": {"email": admin, "display_name": "Directie", "password": PASSWORD},
        },
    )
    assert status == 201, body
    school_id = uuid.UUID(body["school_id"])
    status, body = await call(identity, "POST", "/auth/login", json={"email": admin, "password": PASSWORD})
    assert status == 200, body
    school = School(school_id, body["access_token"])
    status, body = await call(
        identity, "POST", f"/schools/{school_id}/school-years", school.token, json={"name": YEAR}
    )
    assert status == 201, body
    for name in groups:
        status, body = await call(
            identity,
            "POST",
            f"/schools/{school_id}/groups",
            school.token,
            json={"name": name, "school_year": YEAR},
        )
        assert status == 201, body
        school.groups[name] = uuid.UUID(body["group_id"])
    if launch:
        status, body = await call(identity, "POST", f"/schools/{school_id}/invitations", school.token)
        assert status in (200, 202), body
    return school


async def post_file(
    identity: Identity, school: School, data: bytes, content_type: str = "text/csv", **params: Any
) -> tuple[int, Any]:
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    return await call(
        identity,
        "POST",
        f"/schools/{school.school_id}/imports",
        school.token,
        data=io.BytesIO(data),
        params=query,
        headers={"Content-Type": content_type},
    )


async def finished(identity: Identity, school: School, import_id: str) -> dict[str, Any]:
    for _ in range(600):
        status, body = await call(identity, "GET", f"/imports/{import_id}", school.token)
        assert status == 200, body
        if body["status"] in ("done", "failed"):
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError("the import did not finish within 30 s")


async def run_import(identity: Identity, school: School, data: bytes, **params: Any) -> dict[str, Any]:
    status, body = await post_file(identity, school, data, **params)
    assert status == 202, body
    assert body["status"] in ("queued", "running", "done")
    return await finished(identity, school, body["import_id"])


def export_with_bad_rows() -> tuple[ClassList, dict[int, str], list[Pupil]]:
    """200 rows: 190 good pupils and 10 bad rows spread among them; the bad lines with a word of
    their reason."""
    good = pupils(190)
    bad: list[tuple[int, Pupil, str]] = [
        (7, replace(good[0], number="900001", given="Öykü", email_1="", email_2=""), "missing email"),
        (
            25,
            replace(good[1], number="900002", given="Jaïr", email_1="jair@@ouders.example.nl"),
            "undeliverable",
        ),
        (40, replace(good[2], number="900003", given="Noë", email_2="ouders@school.local"), "undeliverable"),
        (61, replace(good[3], number="900004", given="Ilse", group="Groep 9"), "unknown group"),
        (80, replace(good[4], number="900005", given="Stijn", group=""), "missing group"),
        (101, good[10], "duplicate child"),
        (120, replace(good[5], number="900006", given="Ömer", group="Groep 3"), "different groups"),
        (140, replace(good[5], number="900006", given="Ömer", group="Groep 4"), "different groups"),
        (
            160,
            replace(good[6], number="900007", given="Elif", born=good[6].born.replace(year=1980)),
            "plausible",
        ),
        (180, replace(good[7], number="900008", given="Maaike", consent="misschien"), "neither ja nor nee"),
    ]
    rows = [p.cells() for p in good]
    for index, pupil, _ in bad:
        rows.insert(index, pupil.cells())
    expected = {index + 2: reason for index, _, reason in bad}
    return ClassList(rows=rows), expected, good


async def counts_in_db(identity: Identity, school: School) -> dict[str, int]:
    row = await identity.pool.fetchrow(
        """SELECT (SELECT count(*) FROM children WHERE school_id = $1) AS children,
                  (SELECT count(*) FROM guardianships WHERE school_id = $1) AS guardianships,
                  (SELECT count(*) FROM placements p JOIN children c USING (child_id) WHERE c.school_id = $1) AS placements,
                  (SELECT count(*) FROM access_codes a JOIN guardianships g USING (guardianship_id)
                   WHERE g.school_id = $1) AS codes,
                  (SELECT count(*) FROM outbox) AS events""",
        school.school_id,
    )
    assert row is not None
    return dict(row)


async def test_a_200_pupil_export_with_bad_rows_is_planned_then_applied_once(identity: Identity) -> None:
    school = await new_school(identity)
    export, expected, good = export_with_bad_rows()
    data = export.render(";", "utf-8-sig")

    plan = await run_import(identity, school, data)

    assert (plan["status"], plan["dry_run"], plan["applied"], plan["encoding"], plan["delimiter"]) == (
        "done",
        True,
        False,
        "utf-8",
        ";",
    )
    assert (plan["rows_total"], plan["rows_done"]) == (200, 200)
    counts = plan["counts"]
    assert (counts["created"], counts["invalid"], counts["unchanged"]) == (190, 10, 0)
    assert counts["guardians_added"] == sum(1 + bool(p.email_2) for p in good)
    by_line: dict[int, list[str]] = {}
    for error in plan["errors"]:
        by_line.setdefault(error["line"], []).append(error["problem"])
    assert sorted(by_line) == sorted(expected)
    for line, reason in expected.items():
        assert any(reason in problem for problem in by_line[line]), (line, by_line[line])
    assert (await counts_in_db(identity, school))["children"] == 0

    status, refused = await post_file(identity, school, data, dry_run=False)
    assert status == 422, refused
    assert refused["error"]["code"] == "validation_failed"
    assert {d["line"] for d in refused["error"]["details"]} == set(expected)
    assert (await counts_in_db(identity, school))["children"] == 0

    applied = await run_import(identity, school, data, dry_run=False, skip_invalid=True)

    assert (applied["status"], applied["applied"], applied["failure"]) == ("done", True, None)
    assert applied["counts"]["created"] == 190
    assert applied["counts"]["invited"] == applied["counts"]["guardians_added"]
    after_first = await counts_in_db(identity, school)
    assert (after_first["children"], after_first["placements"]) == (190, 190)
    assert after_first["guardianships"] == after_first["codes"] == counts["guardians_added"]
    names = {
        (r["given_name"], r["tussenvoegsel"], r["family_name"], r["name"], r["external_id"])
        for r in await identity.pool.fetch(
            """SELECT c.given_name, c.tussenvoegsel, c.family_name, g.name, c.external_id FROM children c
               JOIN placements p USING (child_id) JOIN groups g USING (group_id) WHERE c.school_id = $1""",
            school.school_id,
        )
    }
    assert names == {(p.given, p.tussenvoegsel, p.family, p.group, p.number) for p in good}
    shared_addresses = await identity.pool.fetchval(
        """SELECT count(*) FROM (SELECT lower(email) FROM guardianships WHERE school_id = $1
           GROUP BY lower(email) HAVING count(*) > 1) s""",
        school.school_id,
    )
    assert shared_addresses > 10, "siblings share their guardians' addresses"

    again = await run_import(identity, school, data, dry_run=False, skip_invalid=True)

    assert again["counts"]["unchanged"] == 190
    assert (again["counts"]["created"], again["counts"]["changed"], again["counts"]["moved"]) == (0, 0, 0)
    assert again["children"] == []
    assert await counts_in_db(identity, school) == after_first

    cp1252_good = [p for p in good if _fits_cp1252(p)]
    windows = ClassList(rows=[p.cells() for p in cp1252_good])
    as_1252 = await run_import(identity, school, windows.render(";", "windows-1252"))
    assert as_1252["encoding"] == "windows-1252"
    assert as_1252["counts"]["unchanged"] == len(cp1252_good) > 100
    assert as_1252["counts"]["not_in_file"] == 190 - len(cp1252_good)


def _fits_cp1252(pupil: Pupil) -> bool:
    try:
        "".join(pupil.cells()).encode("windows-1252")
    except UnicodeEncodeError:
        return False
    return True


async def test_a_second_export_moves_changes_and_adds_guardians(identity: Identity) -> None:
    school = await new_school(identity)
    people = pupils(30, seed=11)
    await run_import(identity, school, class_list(people).render(), dry_run=False)
    moved = replace(people[0], group="Groep 8" if people[0].group != "Groep 8" else "Groep 7")
    consent = replace(people[1], consent="nee" if people[1].consent.lower() == "ja" else "ja")
    guardian = replace(people[2], email_2="nieuwe.partner@ouders.example.nl")
    renamed = replace(people[3], given="Zoë-Lynn")
    second = [moved, consent, guardian, renamed, *people[4:29]]

    plan = await run_import(identity, school, class_list(second).render(";", "utf-8"))

    assert plan["counts"] | {"invited": 0} == {
        "created": 0,
        "changed": 3,
        "moved": 1,
        "unchanged": 25,
        "invalid": 0,
        "guardians_added": 1,
        "groups_created": 0,
        "not_in_file": 1,
        "invited": 0,
    }
    by_line = {c["line"]: c for c in plan["children"]}
    assert (by_line[2]["action"], by_line[2]["previous_group"], by_line[2]["group"]) == (
        "moved",
        people[0].group,
        moved.group,
    )
    assert by_line[3]["fields_changed"] == ["photo_consent"]
    assert by_line[4]["guardians_added"] == ["nieuwe.partner@ouders.example.nl"]
    assert by_line[5]["fields_changed"] == ["given_name"]
    assert [c["name"] for c in plan["not_in_file"]] == [
        " ".join(x for x in (people[29].given, people[29].tussenvoegsel, people[29].family) if x)
    ]

    applied = await run_import(identity, school, class_list(second).render(), dry_run=False)

    assert applied["counts"]["moved"] == 1
    group = await identity.pool.fetchval(
        "SELECT g.name FROM children c JOIN placements p USING (child_id) JOIN groups g USING (group_id) WHERE c.external_id = $1 AND c.school_id = $2",
        moved.number,
        school.school_id,
    )
    assert group == moved.group
    left = await identity.pool.fetchval(
        "SELECT left_on FROM children WHERE external_id = $1 AND school_id = $2",
        people[29].number,
        school.school_id,
    )
    assert left is None, "a child absent from the file is reported, not taken out"
    assert (await run_import(identity, school, class_list(second).render()))["counts"]["unchanged"] == 29


async def test_a_comma_separated_export_without_numbers_matches_children_by_name_and_birth_date(
    identity: Identity,
) -> None:
    school = await new_school(identity, launch=False)
    people = pupils(20, seed=3)
    header = (
        "Voornaam",
        "Voorvoegsel",
        "Geslachtsnaam",
        "Klas",
        "Geboortedatum",
        "E-mailadres verzorger 1",
        "E-mailadres verzorger 2",
    )
    rows = [
        [
            p.given,
            p.tussenvoegsel,
            p.family,
            p.group.removeprefix("Groep "),
            p.born.isoformat(),
            p.email_1,
            p.email_2,
        ]
        for p in people
    ]
    data = ClassList(header=header, rows=rows).render(",", "utf-8")

    first = await run_import(identity, school, data, dry_run=False)
    second = await run_import(identity, school, data, dry_run=False)

    assert (first["delimiter"], first["counts"]["created"], first["counts"]["invited"]) == (",", 20, 0)
    assert first["columns"]["group"] == "Klas"
    assert second["counts"]["unchanged"] == 20


async def test_a_column_mapping_reads_headers_of_another_product(identity: Identity) -> None:
    school = await new_school(identity, launch=False)
    people = pupils(5, seed=4)
    header = ("Nr", "Kind", "", "Familie", "Jaargroep", "Geb.", "Contact 1", "Contact 2", "Foto")
    data = ClassList(header=header, rows=[p.cells() for p in people]).render()
    mapping = '{"external_id": "Nr", "given_name": "Kind", "family_name": "Familie", "group": "Jaargroep", "date_of_birth": "Geb.", "guardian_email_1": "Contact 1", "guardian_email_2": "Contact 2", "photo_consent": "Foto"}'

    status, refused = await post_file(identity, school, data)
    plan = await run_import(identity, school, data, mapping=mapping)

    assert status == 422
    assert {d["field"] for d in refused["error"]["details"]} >= {"given_name", "family_name", "group"}
    assert plan["counts"]["created"] == 5
    assert plan["columns"]["group"] == "Jaargroep"


@pytest.mark.parametrize(
    ("data", "content_type", "status", "words"),
    [
        (b"", "text/csv", 422, "empty"),
        (
            "Roepnaam;Achternaam;Groep;E-mail ouder 1\r\nÜnal;Çelik;Groep 3;a@ouders.example.nl\r\n".encode(
                "utf-16"
            ),
            "text/csv",
            422,
            "UTF-16",
        ),
        (b"Roepnaam;Achternaam\r\n", "text/csv", 422, "no column"),
        (b'{"pupils": []}', "application/json", 415, "CSV"),
        (b"x" * (MAX_BYTES + 1), "text/csv", 413, "5 MB"),
    ],
)
async def test_a_file_that_cannot_be_imported_gets_a_clear_4xx(
    identity: Identity, data: bytes, content_type: str, status: int, words: str
) -> None:
    school = await new_school(identity, groups=(), launch=False)

    got, body = await post_file(identity, school, data, content_type)

    assert got == status, body
    assert words in str(body["error"])
    assert (
        await identity.pool.fetchval("SELECT count(*) FROM imports WHERE school_id = $1", school.school_id)
        == 0
    )


async def test_an_oversized_file_sent_in_chunks_is_refused_once_it_passes_the_limit(
    identity: Identity,
) -> None:
    school = await new_school(identity, groups=(), launch=False)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"x" * 65536

    status, body = await call(
        identity,
        "POST",
        f"/schools/{school.school_id}/imports",
        school.token,
        data=chunks(),
        headers={"Content-Type": "text/csv"},
    )

    assert (status, body["error"]["code"]) == (413, "payload_too_large")


async def test_bad_parameters_are_refused(identity: Identity) -> None:
    school = await new_school(identity, groups=("Groep 3",), launch=False)
    data = class_list(pupils(2)).render()

    for params, field_name in (
        ({"mapping": "not json"}, "mapping"),
        ({"school_year": "2030-2031"}, "school_year"),
        ({"dry_run": "perhaps"}, "dry_run"),
    ):
        status, body = await post_file(identity, school, data, **params)
        assert status == 422, body
        assert body["error"]["details"][0]["field"] == field_name


async def test_unknown_groups_are_created_only_when_asked(identity: Identity) -> None:
    school = await new_school(identity, groups=("Groep 3",), launch=False)
    people = [replace(p, group="Groep 3") for p in pupils(4, seed=8)] + [
        replace(p, group="Groep 5") for p in pupils(3, seed=9)
    ]
    people = [replace(p, number=str(i)) for i, p in enumerate(people)]
    data = class_list(people).render()

    refused = await run_import(identity, school, data)
    applied = await run_import(identity, school, data, dry_run=False, create_groups=True)

    assert refused["counts"]["invalid"] == 3
    assert (applied["counts"]["created"], applied["counts"]["groups_created"]) == (7, 1)
    _, groups = await call(identity, "GET", f"/schools/{school.school_id}/groups", school.token)
    assert {g["name"]: g["children"] for g in groups["items"]} == {"Groep 3": 4, "Groep 5": 3}


async def test_only_the_schools_admin_sees_an_import(identity: Identity) -> None:
    school, other = await new_school(identity, launch=False), await new_school(identity, launch=False)
    plan = await run_import(identity, school, class_list(pupils(3)).render())

    status, body = await call(identity, "GET", f"/imports/{plan['import_id']}", other.token)
    posted, _ = await post_file(identity, replace_school(school, other.token), class_list(pupils(3)).render())

    assert (status, body["error"]["code"]) == (404, "not_found")
    assert posted == 404


def replace_school(school: School, token: str) -> School:
    return School(school.school_id, token, school.groups)


async def test_a_2000_row_import_shows_its_progress_while_it_runs(identity: Identity) -> None:
    school = await new_school(identity)
    data = class_list(pupils(2000, seed=21)).render()

    status, job = await post_file(identity, school, data, dry_run=False)
    assert status == 202, job
    seen: list[tuple[str, int]] = []
    while True:
        status, view = await call(identity, "GET", f"/imports/{job['import_id']}", school.token)
        seen.append((view["status"], view["rows_done"]))
        if view["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)

    assert (view["status"], view["rows_total"], view["rows_done"]) == ("done", 2000, 2000), view["failure"]
    assert view["counts"]["created"] == 2000
    partway = [done for state, done in seen if state == "running" and 0 < done < 2000]
    assert partway, seen
    assert [done for _, done in seen] == sorted(done for _, done in seen), "progress only goes forward"


async def test_two_applies_of_one_file_at_once_create_each_child_once(identity: Identity) -> None:
    school = await new_school(identity, launch=False)
    data = class_list(pupils(300, seed=31)).render()

    posted = [await post_file(identity, school, data, dry_run=False) for _ in range(2)]
    jobs = [await finished(identity, school, body["import_id"]) for _, body in posted]

    assert sorted((j["counts"]["created"], j["counts"]["unchanged"]) for j in jobs) == [(0, 300), (300, 0)]
    assert (await counts_in_db(identity, school))["children"] == 300


async def test_an_apply_that_fails_halfway_writes_nothing(identity: Identity) -> None:
    school = await new_school(identity)
    people = pupils(400, seed=41)
    people[250] = replace(people[250], given="Boomerang")
    before = await counts_in_db(identity, school)
    async with identity.pool.acquire() as conn:
        await conn.execute(
            """CREATE FUNCTION refuse_boomerang() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN IF NEW.given_name = 'Boomerang' THEN RAISE EXCEPTION 'refused by the test'; END IF;
               RETURN NEW; END $$;
               CREATE TRIGGER refuse_boomerang BEFORE INSERT ON children FOR EACH ROW
               EXECUTE FUNCTION refuse_boomerang();"""
        )
    try:
        job = await run_import(identity, school, class_list(people).render(), dry_run=False)
    finally:
        async with identity.pool.acquire() as conn:
            await conn.execute("DROP TRIGGER refuse_boomerang ON children; DROP FUNCTION refuse_boomerang();")

    assert (job["status"], job["applied"]) == ("failed", False)
    assert "nothing was written" in job["failure"]
    after = await counts_in_db(identity, school)
    assert {k: v for k, v in after.items() if k != "events"} == {
        k: v for k, v in before.items() if k != "events"
    }
    assert (
        await identity.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE envelope -> 'payload' ->> 'school_id' = $1 AND routing_key = 'identity.invitation_issued'",
            str(school.school_id),
        )
        == 0
    )


async def test_an_import_whose_replica_stopped_is_marked_failed_when_read(identity: Identity) -> None:
    school = await new_school(identity, launch=False)
    job = await run_import(identity, school, class_list(pupils(3)).render())
    await identity.pool.execute(
        """UPDATE imports SET status = 'running', finished_at = NULL, heartbeat_at = now() - interval '5 minutes'
           WHERE import_id = $1""",
        uuid.UUID(job["import_id"]),
    )

    status, view = await call(identity, "GET", f"/imports/{job['import_id']}", school.token)

    assert (status, view["status"]) == (200, "failed")
    assert "upload the file again" in view["failure"]


async def test_a_linked_guardian_follows_a_child_the_import_moves(identity: Identity) -> None:
    school = await new_school(identity)
    pupil = replace(pupils(1, seed=51)[0], group="Groep 3", email_2="")
    await run_import(identity, school, class_list([pupil]).render(), dry_run=False)
    code = await identity.code_for(pupil.email_1)
    status, redeemed = await call(
        identity,
        "POST",
        "/access-codes/redeem",
        json={"code": code, "display_name": "Ouder", "password": PASSWORD},
    )
    assert status == 201, redeemed
    person_id = uuid.UUID(redeemed["person_id"])

    moved = await run_import(
        identity, school, class_list([replace(pupil, group="Groep 4")]).render(), dry_run=False
    )

    assert moved["counts"]["moved"] == 1
    active = await identity.pool.fetch(
        "SELECT group_id FROM memberships WHERE person_id = $1 AND active", person_id
    )
    assert [r["group_id"] for r in active] == [school.groups["Groep 4"]]


async def test_imports_beyond_the_replicas_slots_wait_queued_and_all_finish(identity: Identity) -> None:
    school = await new_school(identity, launch=False)
    data = class_list(pupils(5000, seed=71)).render()

    posted = await asyncio.gather(*(post_file(identity, school, data) for _ in range(RUNNING_AT_ONCE + 2)))
    views = await asyncio.gather(
        *(call(identity, "GET", f"/imports/{job['import_id']}", school.token) for _, job in posted)
    )
    states = sorted(view["status"] for _, view in views)
    finished_jobs = [await finished(identity, school, job["import_id"]) for _, job in posted]

    assert "queued" in states, states
    assert [j["status"] for j in finished_jobs] == ["done"] * len(posted)
