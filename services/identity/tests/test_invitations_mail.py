"""Invitations through the whole system: the code in the mail the notifier sends links the guardian,
and a reminder mails a new code while the old one stops working."""

from identity.invitations import reminders
from identity.invitations.api import REPLACED
from shared.app import POOL
from tests.harness.school import (
    ACCESS_CODE,
    PASSWORD,
    add_child,
    add_group,
    mail_text,
    make_school,
    new_email,
    secret_from_mail,
)
from tests.harness.system import System


async def test_the_code_in_the_invitation_mail_links_the_guardian(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 3")
    email = new_email("ouder")
    child = await add_child(system, school, "emma", "Groep 3", [email])
    code = await secret_from_mail(system, email, ACCESS_CODE)
    status, body = await system.call(
        "POST",
        "identity",
        "/access-codes/redeem",
        json={"code": code, "display_name": "Ouder", "password": PASSWORD},
    )
    assert status == 201, body
    assert body["child_id"] == str(child)


async def test_a_reminder_mail_brings_a_new_code_and_the_old_one_stops_working(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 4")
    email = new_email("ouder")
    await add_child(system, school, "daan", "Groep 4", [email])
    first = await secret_from_mail(system, email, ACCESS_CODE)
    before = len(system.smtp.messages)

    pool = system.services["identity"].app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE access_codes ac SET last_sent_at = now() - interval '8 days'
               FROM guardianships gs WHERE gs.guardianship_id = ac.guardianship_id AND gs.school_id = $1""",
            school.school_id,
        )
        assert await reminders.send_due_reminders(conn) == 1
    second = await secret_from_mail(system, email, ACCESS_CODE, before)
    assert second != first
    reminder = next(m for m in system.smtp.messages[before:] if email in m.rcpt_tos)
    assert "herinnering" in mail_text(reminder).lower()

    status, body = await system.call(
        "POST",
        "identity",
        "/access-codes/redeem",
        json={"code": first, "display_name": "O", "password": PASSWORD},
    )
    assert status == 422
    assert body["error"]["message"] == REPLACED
    status, body = await system.call(
        "POST",
        "identity",
        "/access-codes/redeem",
        json={"code": second, "display_name": "O", "password": PASSWORD},
    )
    assert status == 201, body
