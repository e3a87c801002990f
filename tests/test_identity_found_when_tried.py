"""Cases found when identity was tried from outside by someone who did not write it, each a test."""

import asyncio
from datetime import date, timedelta

from shared.app import POOL
from tests.harness.school import (
    ACCESS_CODE,
    add_child,
    add_group,
    add_person,
    add_staff,
    make_school,
    new_email,
    redeem_from_mail,
    secret_from_mail,
    wait_until_linked,
)
from tests.harness.system import System


async def test_a_code_links_only_the_account_of_the_address_it_was_mailed_to(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 2")
    teacher = await add_person(system, school, "juf", "teacher", "Groep 2")
    parent_email = new_email("echt")
    before = len(system.smtp.messages)
    child = await add_child(system, school, "tim", "Groep 2", [parent_email])
    code = await secret_from_mail(system, parent_email, ACCESS_CODE, before)

    status, body = await system.call(
        "POST", "identity", "/access-codes/redeem", teacher.token, json={"code": code}
    )
    assert status == 422, body
    assert "another email address" in body["error"]["message"]
    status, view = await system.call("GET", "identity", f"/children/{child}", school.admin.token)
    assert status == 200, view
    assert [g["status"] for g in view["guardians"]] == ["invited"]
    # The parent it was meant for still links with it.
    parent = await redeem_from_mail(system, parent_email, None, before)
    await wait_until_linked(system, parent, school.groups["Groep 2"])


async def test_two_admins_taking_each_others_role_at_once_leave_one_admin(system: System) -> None:
    school = await make_school(system)
    second = await add_staff(system, school, "adjunct", "admin")
    for _ in range(3):
        answers = await asyncio.gather(
            system.call(
                "DELETE",
                "identity",
                f"/schools/{school.school_id}/staff/{second.person_id}?role=admin",
                school.admin.token,
            ),
            system.call(
                "DELETE",
                "identity",
                f"/schools/{school.school_id}/staff/{school.admin.person_id}?role=admin",
                second.token,
            ),
        )
        admins = (
            await system.services["identity"]
            .app[POOL]
            .fetchval("SELECT count(*) FROM staff WHERE school_id = $1 AND role = 'admin'", school.school_id)
        )
        assert admins >= 1, answers
        if admins == 2:
            continue
        assert sorted(status for status, _ in answers)[0] == 204
        return


async def test_taking_the_teacher_role_away_ends_its_teaching(system: System) -> None:
    school = await make_school(system)
    group = await add_group(system, school, "Groep 6")
    teacher = await add_person(system, school, "meester", "teacher", "Groep 6")
    await wait_until_linked(system, teacher, group)
    status, body = await system.call(
        "DELETE",
        "identity",
        f"/schools/{school.school_id}/staff/{teacher.person_id}?role=teacher",
        school.admin.token,
    )
    assert status == 204, body
    status, view = await system.call("GET", "identity", f"/groups/{group}", school.admin.token)
    assert status == 200, view
    assert view["teachers"] == []
    await wait_until_linked(system, teacher, group, linked=False)
    # Made a teacher again, they teach nothing until assigned.
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/staff",
        school.admin.token,
        json={"email": teacher.email, "display_name": "Meester", "role": "teacher"},
    )
    assert status == 201, body
    status, view = await system.call("GET", "identity", f"/groups/{group}", school.admin.token)
    assert view["teachers"] == []


async def test_a_leaving_date_ahead_is_refused_and_a_second_leaving_keeps_the_first_date(
    system: System,
) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 4")
    child = await add_child(system, school, "noa", "Groep 4", [new_email("ouder")])
    ahead = (date.today() + timedelta(days=10)).isoformat()
    status, body = await system.call(
        "POST", "identity", f"/children/{child}/leave", school.admin.token, json={"left_on": ahead}
    )
    assert status == 422, body
    assert body["error"]["details"][0]["field"] == "left_on"
    earlier = (date.today() - timedelta(days=3)).isoformat()
    status, body = await system.call(
        "POST", "identity", f"/children/{child}/leave", school.admin.token, json={"left_on": earlier}
    )
    assert status == 200, body
    status, body = await system.call(
        "POST", "identity", f"/children/{child}/leave", school.admin.token, json={}
    )
    assert status == 200, body
    assert body["left_on"] == earlier


async def test_group_names_that_differ_only_in_case_are_one_group(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/groups",
        school.admin.token,
        json={"name": "groep 1", "school_year": "2026-2027"},
    )
    assert status == 409, body


async def test_a_class_list_with_a_quote_left_open_is_a_422_naming_the_line(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    rows = "".join(
        f"Kind{i};Jansen-de Boer van Dijk;Groep 1;ouder.nummer{i}@example.nl\n" for i in range(3000)
    )
    csv = (
        "roepnaam;achternaam;groep;e-mail ouder 1\n" + 'Eva;"Stray quote;Groep 1;eva@example.nl\n' + rows
    ).encode()
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/imports",
        school.admin.token,
        data=csv,
        headers={"Content-Type": "text/csv"},
    )
    assert status == 422, body
    assert "line 2" in str(body["error"]), body


async def test_an_authorization_header_of_undecodable_bytes_is_a_401_everywhere(system: System) -> None:
    for service in ("identity", "posts", "media", "notifier"):
        host, port = system.services[service].url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] == b"401", (service, status_line)
