"""A class-list import through the whole system: the guardians it adds get their invitation mails from
the notifier, and once they redeem them they are members of their children's groups everywhere."""

import asyncio
import io
import uuid

from shared.testing.class_lists import ClassList, pupils, replace
from tests.harness.school import (
    ACCESS_CODE,
    PASSWORD,
    Person,
    add_group,
    mail_text,
    make_school,
    wait_until_linked,
)
from tests.harness.system import System, eventually


async def test_a_family_imported_from_a_windows_export_is_invited_and_joins_both_groups(
    system: System,
) -> None:
    school = await make_school(system)
    groups = {name: await add_group(system, school, name) for name in ("Groep 5", "Groep 7")}
    parent = f"celik.{uuid.uuid4().hex[:8]}@ouders.example.nl"
    first = replace(pupils(1, seed=61)[0], number="7001", given="Ümit", tussenvoegsel="", family="Çelik")
    siblings = [
        replace(first, group="Groep 5", email_1=parent, email_2=""),
        replace(first, number="7002", given="Zoë", group="Groep 7", email_1=parent, email_2=""),
    ]
    data = ClassList(rows=[p.cells() for p in siblings]).render(";", "windows-1252")

    status, job = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/imports",
        school.admin.token,
        data=io.BytesIO(data),
        params={"dry_run": "false"},
        headers={"Content-Type": "text/csv"},
    )
    assert status == 202, job
    while job["status"] not in ("done", "failed"):
        await asyncio.sleep(0.05)
        status, job = await system.call("GET", "identity", f"/imports/{job['import_id']}", school.admin.token)
    assert (job["status"], job["encoding"], job["counts"]["created"], job["counts"]["invited"]) == (
        "done",
        "windows-1252",
        2,
        2,
    )

    codes: list[str] = []

    async def both_mails() -> bool:
        codes[:] = [
            match.group(1)
            for mail in system.smtp.messages
            if parent in mail.rcpt_tos and (match := ACCESS_CODE.search(mail_text(mail)))
        ]
        return len(codes) == 2

    await eventually(both_mails, within=20, what="two invitation mails to the shared address")
    status, body = await system.call(
        "POST",
        "identity",
        "/access-codes/redeem",
        json={"code": codes[0], "display_name": "Ouder", "password": PASSWORD},
    )
    assert status == 201, body
    person = Person(uuid.UUID(body["person_id"]), parent, body["access_token"])
    status, body = await system.call(
        "POST", "identity", "/access-codes/redeem", person.token, json={"code": codes[1]}
    )
    assert status == 201, body

    for group_id in groups.values():
        await wait_until_linked(system, person, group_id)
    status, me = await system.call("GET", "identity", "/me", person.token)
    assert status == 200, me
    assert sorted(c["given_name"] for c in me["children"]) == ["Zoë", "Ümit"]
