"""A child's erasure across the services (GDPR art. 17): the invitation identity sends a guardian
names the child (InvitationIssued.child_id); when the school erases the child, the notifier's
stored invitation mail no longer holds the child's name."""

from shared.app import POOL
from tests.harness.school import ACCESS_CODE, add_child, add_group, make_school, new_email, secret_from_mail
from tests.harness.system import System, eventually


async def test_an_erased_childs_name_leaves_the_invitation_mail_sent_about_it(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 4")
    guardian = new_email("ouder")
    child_id = await add_child(system, school, "yara", "Groep 4", [guardian])
    await secret_from_mail(system, guardian, ACCESS_CODE)
    pool = system.services["notifier"].app[POOL]
    mail = await pool.fetchrow("SELECT mail_id, context FROM mails WHERE to_email = $1", guardian)
    assert mail is not None
    assert (mail["context"]["child_id"], mail["context"]["child_name"]) == (str(child_id), "Yara")

    status, body = await system.call("POST", "identity", f"/children/{child_id}/erasure", school.admin.token)
    assert status == 200, body

    async def forgotten() -> bool:
        context = await pool.fetchval("SELECT context FROM mails WHERE mail_id = $1", mail["mail_id"])
        return bool(context["child_name"] == "")

    await eventually(forgotten, within=15, what="the child's name gone from the invitation mail")
    assert not await pool.fetchval(
        "SELECT count(*) FROM mails WHERE school_id = $1 AND context::text LIKE '%Yara%'",
        school.school_id,
    )
