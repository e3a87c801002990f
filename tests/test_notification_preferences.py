"""A parent's notification preferences through the whole system: the API a parent sets them with,
and what a teacher's posts then make reach them (issue 8, "Preferences")."""

import asyncio
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.schedule import run_schedule
from shared.app import POOL
from tests.harness.school import add_person, choose, make_class, register_push
from tests.harness.system import System, eventually

DEFAULTS = {
    "posts": {"channel": "auto", "timing": "immediate"},
    "signups": {"channel": "auto", "timing": "immediate"},
    "reminders": {"channel": "auto", "timing": "immediate"},
    "quiet_hours": None,
}


async def test_a_parent_reads_and_sets_preferences(system: System) -> None:
    _, _, _, parent = await make_class(system, "Groep 2")
    status, body = await system.call("GET", "notifier", "/preferences", parent.token)
    assert (status, body) == (200, DEFAULTS)

    wanted = {
        "posts": {"channel": "push", "timing": "immediate"},
        "signups": {"channel": "both", "timing": "immediate"},
        "reminders": {"channel": "email", "timing": "digest"},
        "quiet_hours": {"starts": "21:30", "ends": "07:00"},
    }
    status, body = await system.call("PUT", "notifier", "/preferences", parent.token, json=wanted)
    assert (status, body) == (200, wanted)
    status, body = await system.call("GET", "notifier", "/preferences", parent.token)
    assert (status, body) == (200, wanted)

    for wrong in (
        {**wanted, "posts": {"channel": "fax"}},
        {**wanted, "quiet_hours": {"starts": "25:00", "ends": "07:00"}},
        {k: v for k, v in wanted.items() if k != "signups"},
    ):
        status, body = await system.call("PUT", "notifier", "/preferences", parent.token, json=wrong)
        assert status == 422, body
    status, _ = await system.call("GET", "notifier", "/preferences")
    assert status == 401
    status, body = await system.call("GET", "notifier", "/preferences", parent.token)
    assert body == wanted


async def test_a_digest_parent_gets_one_mail_at_the_digest_time_and_a_push_parent_only_pushes(
    system: System,
) -> None:
    school, group, teacher, digest_parent = await make_class(system, "Groep 4")
    push_parent = await add_person(system, school, "ouder2", "guardian", "Groep 4")
    subscription = await register_push(system, push_parent)
    await choose(system, push_parent, "push")
    await choose(system, digest_parent, "email", "digest")

    notifier = system.services["notifier"].app[POOL]

    async def known() -> bool:
        return bool(
            await notifier.fetchval(
                "SELECT count(*) = 2 FROM memberships WHERE group_id = $1 AND role = 'guardian' AND active",
                group,
            )
        )

    await eventually(known, what="both parents in the notifier's copy")
    mails_before = len(system.smtp.messages)
    for title in ("Gym", "Schoolreis"):
        status, body = await system.call(
            "POST",
            "posts",
            f"/groups/{group}/posts",
            teacher.token,
            json={"title": title, "body": f"{title}!"},
        )
        if status == 409:  # the school allows fewer posts a day: one is enough to show the digest
            break
        assert status == 201, body

    async def pushed() -> bool:
        return len(system.push.pushes_for(subscription)) >= 1

    await eventually(pushed, what="the push parent's push")
    await asyncio.sleep(1.0)
    mails = [
        m
        for m in system.smtp.messages[mails_before:]
        if {digest_parent.email, push_parent.email} & set(m.rcpt_tos)
    ]
    assert mails == []

    row = await notifier.fetchrow(
        "SELECT time_zone, digest_time FROM schools WHERE school_id = $1", school.school_id
    )
    zone = ZoneInfo(row["time_zone"])
    local_now = datetime.now(UTC).astimezone(zone)
    at = time.fromisoformat(row["digest_time"])
    digest_moment = datetime.combine(local_now.date(), at, tzinfo=zone)
    if digest_moment < local_now:
        digest_moment += timedelta(days=1)
    async with notifier.acquire() as conn, conn.transaction():
        _, made = await run_schedule(conn, digest_moment + timedelta(minutes=1), "Europe/Amsterdam")
    # Other tests of this session may have digest parents waiting too: this parent's one mail is below.
    assert made >= 1

    async def digested() -> bool:
        return any(digest_parent.email in m.rcpt_tos for m in system.smtp.messages[mails_before:])

    await eventually(digested, what="the digest")
    [digest] = [m for m in system.smtp.messages[mails_before:] if digest_parent.email in m.rcpt_tos]
    assert "Gym" in digest.text
    assert digest.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not [m for m in system.smtp.messages[mails_before:] if push_parent.email in m.rcpt_tos]


async def test_a_parent_promoted_from_the_waiting_list_is_told_exactly_once(system: System) -> None:
    school, group, teacher, first = await make_class(system, "Groep 6")
    second = await add_person(system, school, "ouder2", "guardian", "Groep 6")
    status, helper_list = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/helper-lists",
        teacher.token,
        json={
            "title": "Schoolreis Artis",
            "deadline": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "items": [{"title": "Rijden", "capacity": 1}],
        },
    )
    assert status == 201, helper_list
    list_id, item_id = helper_list["list_id"], helper_list["items"][0]["item_id"]
    signup = f"/helper-lists/{list_id}/items/{item_id}/signup"
    for parent in (first, second):  # the first gets the place, the second waits
        status, body = await system.call("PUT", "posts", signup, parent.token)
        assert status in (200, 201), body
    mails_before = len(system.smtp.messages)
    status, body = await system.call("DELETE", "posts", signup, first.token)
    assert status in (200, 204), body

    def promoted() -> list[object]:
        return [
            m
            for m in system.smtp.messages[mails_before:]
            if second.email in m.rcpt_tos and "Rijden" in str(m.message["Subject"])
        ]

    async def told() -> bool:
        return len(promoted()) >= 1

    await eventually(told, within=15, what="the promotion mail")
    await asyncio.sleep(1.5)  # room for a second one to arrive
    assert len(promoted()) == 1
    # The one who withdrew is not told of a place (the list's own feed post may still reach them).
    assert not [
        m
        for m in system.smtp.messages[mails_before:]
        if first.email in m.rcpt_tos and "Rijden" in str(m.message["Subject"])
    ]
