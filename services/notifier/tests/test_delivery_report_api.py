"""The operator's delivery report of a post (issue 8): ``GET /reports/posts/{post_id}`` with the
operator key matches what the test servers received: the SMTP sink, the Web Push service and the
FCM and APNs stand-ins; a dead token is a failure with its reason; a digest email and a push in
quiet hours are held, each counted under its reason."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from shared.app import POOL
from tests.harness.feed import allow_posts_per_day
from tests.harness.school import Person, add_person, choose, make_class, register_push, wait_until_linked
from tests.harness.system import OPERATOR_KEY, System, eventually

OPERATOR = {"X-Operator-Key": OPERATOR_KEY}


def pool(system: System) -> asyncpg.Pool:
    return system.services["notifier"].app[POOL]


async def register(system: System, person: Person, kind: str, token: str) -> None:
    status, body = await system.call(
        "POST", "notifier", "/devices", person.token, json={"kind": kind, "token": token}
    )
    assert status == 201, body


async def report(system: System, post_id: uuid.UUID) -> dict[str, Any]:
    status, body = await system.call("GET", "notifier", f"/reports/posts/{post_id}", headers=OPERATOR)
    assert status == 200, body
    return dict(body)


async def test_the_report_of_a_post_matches_what_the_servers_received(system: System) -> None:
    school, group, teacher, browser = await make_class(system, "Groep 4")
    await allow_posts_per_day(system, school)
    android, iphone, dead, mail_only, digest, night = [
        await add_person(system, school, key, "guardian", "Groep 4")
        for key in ("android", "iphone", "dood", "mail", "digest", "nacht")
    ]
    for person in (android, iphone, dead, mail_only, digest, night):
        await wait_until_linked(system, person, group)

    subscription = await register_push(system, browser)
    await choose(system, browser, "both")
    fcm_token, apns_token, dead_token = system.fcm.register(), system.apns.register(), system.apns.register()
    await register(system, android, "fcm", fcm_token)
    await choose(system, android, "both")
    await register(system, iphone, "apns", apns_token)  # push only: the default with a device
    await register(system, dead, "apns", dead_token)
    system.apns.unregister(dead_token)  # Apple answers 410 Unregistered: a failure, the device removed
    await choose(system, mail_only, "email")
    await choose(system, digest, "email", "digest")
    # Quiet hours around the school's present moment: the push waits until they end.
    night_token = system.fcm.register()
    await register(system, night, "fcm", night_token)
    zone = ZoneInfo(
        await pool(system).fetchval("SELECT time_zone FROM schools WHERE school_id = $1", school.school_id)
    )
    local = datetime.now(UTC).astimezone(zone)
    quiet = {
        "starts": (local - timedelta(hours=1)).strftime("%H:%M"),
        "ends": (local + timedelta(hours=1)).strftime("%H:%M"),
    }
    choice = {"channel": "push", "timing": "immediate"}
    status, body = await system.call(
        "PUT", "notifier", "/preferences", night.token,
        json={"posts": choice, "signups": choice, "reminders": choice, "quiet_hours": quiet},
    )  # fmt: skip
    assert status == 200, body

    mails_before = len(system.smtp.messages)
    status, created = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Uitje", "body": "Vrijdag naar het bos"},
    )
    assert status == 201, created
    post_id = uuid.UUID(created["post_id"])

    async def settled() -> bool:
        status, got = await system.call("GET", "notifier", f"/reports/posts/{post_id}", headers=OPERATOR)
        return bool(status == 200 and got["pending"] == 0 and got["targeted"] == 7)

    await eventually(settled, within=20, what="the post's deliveries settled")
    got = await report(system, post_id)

    # What the servers received for this post.
    addresses = {p.email for p in (browser, android, mail_only)}
    mailed = [m for m in system.smtp.messages[mails_before:] if set(m.rcpt_tos) & addresses]
    web_pushes = [p for p in system.push.pushes_for(subscription) if p.json()["tag"] == f"post-{post_id}"]
    fcm_pushes = system.fcm.messages_for(fcm_token) + system.fcm.messages_for(night_token)
    apns_pushes = system.apns.messages_for(apns_token) + system.apns.messages_for(dead_token)
    assert len(mailed) == 3
    assert (len(web_pushes), len(fcm_pushes), len(apns_pushes)) == (1, 1, 1)

    assert got["post_id"] == str(post_id)
    assert got["group_id"] == str(group)
    assert got["targeted"] == 7
    # browser: push + email; android: push + email; iphone, dead, night: push; mail, digest: email.
    assert got["deliveries"] == 9
    assert got["delivered"] == {
        "email": len(mailed),
        "push": len(web_pushes) + len(fcm_pushes) + len(apns_pushes),
    }
    assert got["delivered_by_provider"] == {"smtp": 3, "webpush": 1, "fcm": 1, "apns": 1}
    assert got["failed"] == 1
    [failure] = got["failures"]
    assert (failure["channel"], failure["provider"], failure["count"]) == ("push", "apns", 1)
    assert "Unregistered" in failure["reason"]
    assert got["held"] == {"quiet_hours": 1, "digest": 1, "scheduled": 0}
    assert got["pending"] == 0
    assert got["retrying"] == 0


async def test_the_report_is_for_the_operator_only(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 5")
    await allow_posts_per_day(system, school)
    status, created = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Nieuws", "body": "Gym"}
    )
    assert status == 201, created
    path = f"/reports/posts/{created['post_id']}"

    async def known() -> bool:
        status, _ = await system.call("GET", "notifier", path, headers=OPERATOR)
        return status == 200

    await eventually(known, what="the notifier took the post in")
    for person in (teacher, parent):
        status, body = await system.call("GET", "notifier", path, person.token)
        assert status == 401, body
    status, body = await system.call("GET", "notifier", path, headers={"X-Operator-Key": "wrong"})
    assert status == 401, body
    status, body = await system.call("GET", "notifier", f"/reports/posts/{uuid.uuid4()}", headers=OPERATOR)
    assert status == 404, body
    assert body["error"]["code"] == "not_found"
