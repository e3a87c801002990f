"""Children's copies elsewhere follow identity (issue 9): ChildChanged with a growing revision on
every change of a child's name or photo consent (API and class-list import), none when nothing
changed; and a child's erasure, which removes the child's data, ends the guardians' access and
publishes ChildErased. Against identity alone on a real database and broker."""

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from identity.families.changes import child_changed_events
from tests.harness.identity_alone import (
    Identity,
    add_child,
    launch,
    make_school,
    new_email,
    redeem,
    running_identity,
    token_for,
)
from tests.harness.system import eventually


@pytest.fixture(scope="module")
async def identity() -> AsyncIterator[Identity]:
    async with running_identity() as running:
        yield running


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


def changes_of(identity: Identity, child_id: str) -> list[dict[str, Any]]:
    return [
        e["payload"]
        for e in identity.events
        if e["type"] == "identity.child_changed" and e["payload"]["child_id"] == child_id
    ]


async def settled(identity: Identity) -> None:
    """Wait until identity's outbox is relayed and the catching queue had time to receive it."""

    async def relayed() -> bool:
        async with identity.pool.acquire() as conn:
            return not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")

    await eventually(relayed, within=10, what="the outbox relayed")
    await asyncio.sleep(0.3)


async def test_every_change_of_name_or_consent_publishes_a_newer_revision(identity: Identity) -> None:
    school = await make_school(identity, "Groep 4")
    child = await add_child(identity, school, "Groep 4", name="Sanne")
    child_id = child["child_id"]
    await eventually(
        holds(lambda: bool(changes_of(identity, child_id))), within=10, what="ChildChanged on create"
    )
    first = changes_of(identity, child_id)[0]
    assert (first["given_name"], first["family_name"], first["photo_consent"]) == ("Sanne", "Jansen", False)

    status, body, _ = await identity.call(
        "PATCH",
        f"/children/{child_id}",
        school.admin_token,
        json={"photo_consent": True, "tussenvoegsel": "de"},
    )
    assert status == 200, body
    await eventually(
        holds(lambda: len(changes_of(identity, child_id)) == 2), within=10, what="ChildChanged on edit"
    )
    second = changes_of(identity, child_id)[1]
    assert (second["family_name"], second["photo_consent"]) == ("de Jansen", True)
    assert second["revision"] > first["revision"]

    # A change of something else (the date of birth) or to the same values publishes nothing.
    for patch in ({"date_of_birth": "2019-03-14"}, {"photo_consent": True}):
        status, body, _ = await identity.call(
            "PATCH", f"/children/{child_id}", school.admin_token, json=patch
        )
        assert status == 200, body
    await settled(identity)
    assert len(changes_of(identity, child_id)) == 2

    # The republish source gives the current state, with the current revision.
    async with identity.pool.acquire() as conn:
        current = dict((str(e.child_id), e) for _, e in await child_changed_events(conn, school.school_id))
    assert current[child_id].revision == second["revision"]
    assert current[child_id].photo_consent


async def test_a_class_list_import_publishes_the_children_it_creates_and_changes(identity: Identity) -> None:
    school = await make_school(identity, "Groep 5")

    async def imported(csv: str) -> dict[str, Any]:
        status, job, _ = await identity.call(
            "POST",
            f"/schools/{school.school_id}/imports",
            school.admin_token,
            data=io.BytesIO(csv.encode()),
            params={"dry_run": "false"},
            headers={"Content-Type": "text/csv"},
        )
        assert status == 202, job
        while job["status"] not in ("done", "failed"):
            await asyncio.sleep(0.05)
            status, job, _ = await identity.call("GET", f"/imports/{job['import_id']}", school.admin_token)
        assert job["status"] == "done", job
        return dict(job)

    header = "leerlingnummer;roepnaam;achternaam;groep;e-mail ouder 1;toestemming foto's\n"
    await imported(
        header
        + "9001;Daan;Bakker;Groep 5;daan@ouders.example.nl;nee\n9002;Lotte;Visser;Groep 5;lotte@ouders.example.nl;ja\n"
    )
    await settled(identity)
    async with identity.pool.acquire() as conn:
        ids = {
            r["external_id"]: str(r["child_id"])
            for r in await conn.fetch(
                "SELECT external_id, child_id FROM children WHERE school_id = $1", school.school_id
            )
        }
    assert [c["photo_consent"] for c in changes_of(identity, ids["9001"])] == [False]
    assert [c["photo_consent"] for c in changes_of(identity, ids["9002"])] == [True]

    await imported(
        header
        + "9001;Daan;Bakker;Groep 5;daan@ouders.example.nl;ja\n9002;Lotte;Visser;Groep 5;lotte@ouders.example.nl;ja\n"
    )
    await settled(identity)
    assert [c["photo_consent"] for c in changes_of(identity, ids["9001"])] == [False, True]
    assert len(changes_of(identity, ids["9002"])) == 1


async def test_erasure_removes_the_child_ends_the_guardians_access_and_publishes_child_erased(
    identity: Identity,
) -> None:
    school = await make_school(identity, "Groep 6")
    parent = new_email("ouder")
    child = await add_child(identity, school, "Groep 6", parent, name="Noor")
    child_id = child["child_id"]
    await launch(identity, school)
    status, body, _ = await redeem(identity, await identity.code_for(parent))
    assert status == 201, body
    person_id = body["person_id"]

    def granted() -> bool:
        return any(
            e["type"] == "identity.membership_granted" and e["payload"]["person_id"] == person_id
            for e in identity.events
        )

    await eventually(holds(granted), within=10, what="the parent's membership")

    # Only an admin of the child's school may erase: anyone else gets 404, as for an unknown child.
    outsider = await make_school(identity)
    for token in (outsider.admin_token, token_for(identity, person_id)):
        status, body, _ = await identity.call("POST", f"/children/{child_id}/erasure", token)
        assert status == 404, body
    status, body, _ = await identity.call("POST", f"/children/{uuid.uuid4()}/erasure", school.admin_token)
    assert status == 404, body
    assert body["error"]["code"] == "not_found"

    status, body, _ = await identity.call("POST", f"/children/{child_id}/erasure", school.admin_token)
    assert status == 200, body
    assert (body["placements_removed"], body["guardianships_removed"], body["memberships_changed"]) == (
        1,
        1,
        1,
    )

    def erased() -> bool:
        return any(
            e["type"] == "identity.child_erased" and e["payload"]["child_id"] == child_id
            for e in identity.events
        )

    def revoked() -> bool:
        return any(
            e["type"] == "identity.membership_revoked" and e["payload"]["person_id"] == person_id
            for e in identity.events
        )

    await eventually(holds(erased), within=10, what="ChildErased")
    await eventually(holds(revoked), within=10, what="the parent's membership revoked")

    status, body, _ = await identity.call("GET", f"/children/{child_id}", school.admin_token)
    assert status == 404, body
    status, body, _ = await identity.call("POST", f"/children/{child_id}/erasure", school.admin_token)
    assert status == 404, body
    async with identity.pool.acquire() as conn:
        left = await conn.fetchval(
            """SELECT (SELECT count(*) FROM children WHERE child_id = $1)
                    + (SELECT count(*) FROM placements WHERE child_id = $1)
                    + (SELECT count(*) FROM guardianships WHERE child_id = $1)
                    + (SELECT count(*) FROM outbox WHERE envelope::text LIKE '%Noor%')""",
            uuid.UUID(child_id),
        )
        assert left == 0
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM child_erasures WHERE child_id = $1", uuid.UUID(child_id)
            )
            == 1
        )


async def test_erasure_blanks_the_child_in_import_reports_and_relayed_events(identity: Identity) -> None:
    school = await make_school(identity, "Groep 7")
    csv = (
        "leerlingnummer;roepnaam;achternaam;groep;e-mail ouder 1\n"
        "9101;Fenna;Zwart;Groep 7;fenna@ouders.example.nl\n"
        "9102;Gijs;Wit;Groep 7;gijs@ouders.example.nl\n"
    )
    status, job, _ = await identity.call(
        "POST",
        f"/schools/{school.school_id}/imports",
        school.admin_token,
        data=io.BytesIO(csv.encode()),
        params={"dry_run": "false"},
        headers={"Content-Type": "text/csv"},
    )
    assert status == 202, job
    while job["status"] not in ("done", "failed"):
        await asyncio.sleep(0.05)
        status, job, _ = await identity.call("GET", f"/imports/{job['import_id']}", school.admin_token)
    assert job["status"] == "done", job
    await settled(identity)
    fenna = await identity.pool.fetchval("SELECT child_id FROM children WHERE external_id = '9101'")

    status, body, _ = await identity.call("POST", f"/children/{fenna}/erasure", school.admin_token)
    assert status == 200, body

    status, report, _ = await identity.call("GET", f"/imports/{job['import_id']}", school.admin_token)
    assert status == 200, report
    names = sorted(c["name"] for c in report["children"])
    assert names == ["(gewist)", "Gijs Wit"]
    erased = next(c for c in report["children"] if c["name"] == "(gewist)")
    assert erased["guardians_added"] == []
    relayed = await identity.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND envelope::text LIKE '%Fenna%'"
    )
    assert relayed == 0
