"""Invitations and access codes (issue 5), against identity alone on a real database and broker:
clear refusals, throttled guessing, launches that invite each guardian once, re-send and revoke,
reminders, and the clear code kept nowhere once sent."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from identity.invitations import launches, reminders, store, throttle
from identity.invitations.api import EXPIRED, INVALID, NO_LONGER, REPLACED, USED, WITHDRAWN
from identity.login.api import DEVICE_COOKIE
from identity.login.throttle import device_client
from tests.harness.identity_alone import (
    Identity,
    SchoolAlone,
    add_child,
    launch,
    launch_done,
    make_school,
    new_email,
    redeem,
    running_identity,
    token_for,
)

WRONG = "QQQQ-QQQQ-QQQQ-QQQQ"


@pytest.fixture(scope="module")
async def identity() -> AsyncIterator[Identity]:
    async with running_identity() as running:
        yield running


@pytest.fixture(autouse=True)
async def fresh_counters(identity: Identity) -> None:
    """Every test guesses from 127.0.0.1: start each with no attempts counted."""
    async with identity.pool.acquire() as conn:
        await conn.execute("DELETE FROM redeem_attempts")


async def invited_family(identity: Identity) -> tuple[SchoolAlone, dict[str, Any], str, str]:
    """A launched school with one child in Groep 3 and one guardian; returns the school, the child,
    the guardian's address and access code."""
    school = await make_school(identity, "Groep 3")
    email = new_email("ouder")
    child = await add_child(identity, school, "Groep 3", email)
    await launch(identity, school)
    return school, child, email, await identity.code_for(email)


def refusal(body: Any) -> str:
    return str(body["error"]["message"])


async def move_back(identity: Identity, column: str, code_id: Any, days: float) -> None:
    assert column in ("expires_at", "last_sent_at")
    async with identity.pool.acquire() as conn:
        await conn.execute(
            f"UPDATE access_codes SET {column} = {column} - $2 * interval '1 day' WHERE code_id = $1",  # noqa: S608
            code_id,
            days,
        )


# Refusals.


async def test_a_wrong_code_is_refused_clearly(identity: Identity) -> None:
    status, body, _ = await redeem(identity, WRONG)
    assert status == 422, body
    assert refusal(body) == INVALID
    assert body["error"]["details"] == [{"field": "code", "problem": INVALID}]
    # What cannot be a code at all (15 letters and digits) the schema refuses already.
    status, body, _ = await redeem(identity, "not-a-code-at-all-xx")
    assert status == 422, body
    assert [d["field"] for d in body["error"]["details"]] == ["code"]


async def test_a_code_is_accepted_as_typed_lowercase_and_with_look_alikes(identity: Identity) -> None:
    _, child, _, code = await invited_family(identity)
    typed = code.lower().replace("-", " ")
    status, body, _ = await redeem(identity, typed)
    assert status == 201, body
    assert body["child_id"] == child["child_id"]
    assert body["access_token"]


async def test_a_used_code_is_refused_the_second_time(identity: Identity) -> None:
    _, _, _, code = await invited_family(identity)
    assert (await redeem(identity, code))[0] == 201
    status, body, _ = await redeem(identity, code)
    assert status == 422
    assert refusal(body) == USED


async def test_an_expired_code_is_refused(identity: Identity) -> None:
    _, _, email, code = await invited_family(identity)
    await move_back(identity, "expires_at", identity.invitations_to(email)[0]["invitation_id"], 30)
    status, body, _ = await redeem(identity, code)
    assert status == 422
    assert refusal(body) == EXPIRED


async def test_a_replaced_code_and_a_withdrawn_code_are_refused_each_with_its_reason(
    identity: Identity,
) -> None:
    school, child, email, first = await invited_family(identity)
    guardianship = child["guardians"][0]["guardianship_id"]
    status, body, _ = await identity.call(
        "POST", f"/guardianships/{guardianship}/invitation", school.admin_token
    )
    assert status == 201, body
    second = await identity.code_for(email, 2)
    assert second != first
    status, body, _ = await redeem(identity, first)
    assert (status, refusal(body)) == (422, REPLACED)

    status, _, _ = await identity.call(
        "DELETE", f"/guardianships/{guardianship}/invitation", school.admin_token
    )
    assert status == 204
    status, body, _ = await redeem(identity, second)
    assert (status, refusal(body)) == (422, WITHDRAWN)
    status, body, _ = await identity.call(
        "DELETE", f"/guardianships/{guardianship}/invitation", school.admin_token
    )
    assert status == 404, body


async def test_the_code_of_a_child_who_left_is_refused(identity: Identity) -> None:
    school, child, _, code = await invited_family(identity)
    status, body, _ = await identity.call(
        "POST", f"/children/{child['child_id']}/leave", school.admin_token, json={}
    )
    assert status == 200, body
    status, body, _ = await redeem(identity, code)
    assert (status, refusal(body)) == (422, NO_LONGER)


# Re-send and revoke.


async def test_resend_mails_a_new_code_that_works_and_the_old_one_stops(identity: Identity) -> None:
    school, child, email, first = await invited_family(identity)
    guardianship = child["guardians"][0]["guardianship_id"]
    status, body, _ = await identity.call(
        "POST", f"/guardianships/{guardianship}/invitation", school.admin_token
    )
    assert (status, body["status"]) == (201, "invited")
    second = await identity.code_for(email, 2)
    assert identity.invitations_to(email)[1]["reminder"] == 0
    assert (await redeem(identity, first))[0] == 422
    status, body, _ = await redeem(identity, second)
    assert status == 201, body


async def test_resend_to_a_linked_guardian_is_refused(identity: Identity) -> None:
    school, child, _, code = await invited_family(identity)
    assert (await redeem(identity, code))[0] == 201
    guardianship = child["guardians"][0]["guardianship_id"]
    status, body, _ = await identity.call(
        "POST", f"/guardianships/{guardianship}/invitation", school.admin_token
    )
    assert status == 409, body


async def test_resend_and_revoke_of_another_schools_guardian_are_not_found(identity: Identity) -> None:
    _, child, _, _ = await invited_family(identity)
    other = await make_school(identity)
    guardianship = child["guardians"][0]["guardianship_id"]
    for method in ("POST", "DELETE"):
        status, body, _ = await identity.call(
            method, f"/guardianships/{guardianship}/invitation", other.admin_token
        )
        assert status == 404, body


async def test_revoked_guardian_gets_no_invitation_until_resent(identity: Identity) -> None:
    school, child, email, _ = await invited_family(identity)
    guardianship = child["guardians"][0]["guardianship_id"]
    assert (await identity.call("DELETE", f"/guardianships/{guardianship}/invitation", school.admin_token))[
        0
    ] == 204
    await launch(identity, school)
    assert len(identity.invitations_to(email)) == 1
    assert (await identity.call("POST", f"/guardianships/{guardianship}/invitation", school.admin_token))[
        0
    ] == 201
    assert (await redeem(identity, await identity.code_for(email, 2)))[0] == 201


# Throttling.


async def test_guessing_from_one_address_is_throttled_counting_every_attempt_at_once(
    identity: Identity,
) -> None:
    limit = throttle.PER_ADDRESS.attempts
    # Each guess with another prefix, so only the address counter can stop them.
    guesses = [f"{c1}{c2}AA-AAAA-AAAA-AAAA" for c1 in "ACDEFGH" for c2 in "ACDEFGH"][: limit + 10]
    answers = await asyncio.gather(*(redeem(identity, g, source="127.0.0.2") for g in guesses))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [422] * limit + [429] * 10
    blocked = next(a for a in answers if a[0] == 429)
    assert 0 < int(blocked[2]["Retry-After"]) <= throttle.PER_ADDRESS.window_seconds
    assert blocked[1]["error"]["code"] == "too_many_requests"
    # Another address is not blocked.
    status, body, _ = await redeem(identity, WRONG, source="127.0.0.3")
    assert (status, refusal(body)) == (422, INVALID)


async def test_guessing_one_code_prefix_is_throttled_from_any_address(identity: Identity) -> None:
    _, _, _, code = await invited_family(identity)
    prefix = code[:4]
    for n in range(throttle.PER_PREFIX.attempts):
        status, _, _ = await redeem(
            identity, f"{prefix}-AAAA-AAAA-AAA{'ACDEFGHJKM'[n]}", source=f"127.0.1.{n + 1}"
        )
        assert status == 422
    status, body, headers = await redeem(identity, f"{prefix}-AAAA-AAAA-AAAA", source="127.0.2.1")
    assert status == 429, body
    assert int(headers["Retry-After"]) > 0
    # The right code gets in all the same: the limits are against abuse, not its owner.
    assert (await redeem(identity, code, source="127.0.2.2"))[0] == 201


async def test_guessing_by_a_logged_in_account_is_throttled(identity: Identity) -> None:
    _, _, _, code = await invited_family(identity)
    status, body, _ = await redeem(identity, code)
    assert status == 201, body
    token = token_for(identity, body["person_id"])
    for n in range(throttle.PER_ACCOUNT.attempts):
        status, _, _ = await redeem(identity, f"{'ACDEFGHJKM'[n]}AAA-AAAA-AAAA-AAAA", token)
        assert status == 422
    status, _, headers = await redeem(identity, "ZZZZ-AAAA-AAAA-AAAA", token)
    assert status == 429
    assert "Retry-After" in headers
    # The address has not reached its limit: someone else behind it is not blocked.
    assert (await redeem(identity, WRONG))[0] == 422


async def test_a_forged_forwarded_for_header_does_not_escape_the_address_limit(identity: Identity) -> None:
    answers = [
        await redeem(
            identity,
            f"{c1}{c2}AA-AAAA-AAAA-AAAA",
            source="127.0.0.4",
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        )
        for n, (c1, c2) in enumerate((c1, c2) for c1 in "ACDEFGH" for c2 in "ACDEFGH")
        if n <= throttle.PER_ADDRESS.attempts
    ]
    assert [status for status, _, _ in answers] == [422] * throttle.PER_ADDRESS.attempts + [429]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() -> None:
    async with running_identity(trusted_proxies="127.0.0.0/8") as behind_proxy:
        for n in range(throttle.PER_ADDRESS.attempts):
            status, _, _ = await redeem(
                behind_proxy,
                f"{'ACDEFGHJKM'[n % 10]}{'ACD'[n // 10]}AA-AAAA-AAAA-AAAA",
                headers={"X-Forwarded-For": "198.51.100.1"},
            )
            assert status == 422
        status, _, headers = await redeem(behind_proxy, WRONG, headers={"X-Forwarded-For": "198.51.100.1"})
        assert status == 429
        assert int(headers["Retry-After"]) > 0
        status, _, _ = await redeem(behind_proxy, WRONG, headers={"X-Forwarded-For": "198.51.100.2"})
        assert status == 422


async def test_a_right_code_gets_in_behind_an_address_over_its_limit(identity: Identity) -> None:
    """A parent at the school's wifi after someone there typed 31 wrong codes."""
    _, child, _, code = await invited_family(identity)
    for n in range(throttle.PER_ADDRESS.attempts + 1):
        await redeem(
            identity, f"{'ACDEFGHJKM'[n % 10]}{'ACDE'[n // 10]}AA-AAAA-AAAA-AAAA", source="127.0.3.1"
        )
    assert (await redeem(identity, WRONG, source="127.0.3.1"))[0] == 429
    # Only a right, usable code is let past the limit.
    status, body, _ = await redeem(identity, code, source="127.0.3.1")
    assert status == 201, body
    assert body["child_id"] == child["child_id"]
    # Its count was taken back; a wrong code is still refused, and so is a code used already.
    async with identity.pool.acquire() as conn:
        counted = await conn.fetchval(
            "SELECT sum(attempts) FROM redeem_attempts WHERE key = 'address:127.0.3.1'"
        )
    assert counted == throttle.PER_ADDRESS.attempts + 2
    assert (await redeem(identity, WRONG, source="127.0.3.1"))[0] == 429
    assert (await redeem(identity, code, source="127.0.3.1"))[0] == 429


async def test_redeeming_makes_the_client_known_to_the_account_as_a_login_does(identity: Identity) -> None:
    """A parent who only ever redeemed a code is not held back by strangers' login failures."""
    _, _, email, code = await invited_family(identity)
    status, body, headers = await redeem(identity, code, source="127.0.4.1")
    assert status == 201, body
    cookie = headers["Set-Cookie"]
    device = cookie.split(f"{DEVICE_COOKIE}=", 1)[1].split(";", 1)[0]
    assert "HttpOnly" in cookie
    async with identity.pool.acquire() as conn:
        known = await conn.fetch("SELECT client FROM known_clients WHERE email = $1", email.lower())
    assert {row["client"] for row in known} == {"ip:127.0.4.1", device_client(device)}


async def test_a_right_code_takes_its_attempt_back(identity: Identity) -> None:
    _, _, _, code = await invited_family(identity)
    assert (await redeem(identity, code))[0] == 201
    async with identity.pool.acquire() as conn:
        counted = await conn.fetchval("SELECT coalesce(sum(attempts), 0) FROM redeem_attempts")
    assert counted == 0


# The clear code is kept nowhere.


async def test_the_clear_code_is_in_no_table_and_no_log_line(
    identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    # As shared.logs.setup_logging pins them in every service: at DEBUG, aio-pika and aiormq log
    # whole message bodies, the invitation with its code among them.
    for library in ("aiormq", "aio_pika"):
        caplog.set_level(logging.WARNING, logger=library)
    caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level too
    _, _, email, code = await invited_family(identity)
    canonical = code.replace("-", "")
    await redeem(identity, code.lower())
    await redeem(identity, code)
    async with identity.pool.acquire() as conn:
        published = await conn.fetchval(
            """SELECT bool_and(published_at IS NOT NULL) FROM outbox
               WHERE routing_key = 'identity.invitation_issued'"""
        )
        assert published
        dump = await conn.fetchval(
            """SELECT string_agg(t::text, ' ') FROM (
                 SELECT envelope::text AS t FROM outbox
                 UNION ALL SELECT row_to_json(a)::text FROM access_codes a
                 UNION ALL SELECT row_to_json(r)::text FROM redeem_attempts r
                 UNION ALL SELECT row_to_json(l)::text FROM invitation_launches l) x"""
        )
    assert code not in dump
    assert canonical not in dump
    assert email in dump  # the outbox still holds the rest of the event
    lines = [str(record.__dict__) for record in caplog.records]
    assert lines, "the request log said nothing"
    assert not [line for line in lines if code in line or canonical in line or code.lower() in line]


# Launching.


async def test_launch_invites_each_pending_guardian_once_and_follows_its_progress(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launches, "BATCH", 3)
    school = await make_school(identity, "Groep 1", "Groep 2")
    two = [new_email("ouder") for _ in range(2)]
    emails = [new_email("ouder") for _ in range(6)] + two
    for n, email in enumerate(emails[:6]):
        await add_child(identity, school, "Groep 1" if n % 2 else "Groep 2", email)
    await add_child(identity, school, "Groep 1", *two)
    unplaced = new_email("ouder")
    await add_child(identity, school, None, unplaced)
    assert identity.invitations_to(emails[0]) == []

    status, body, headers = await identity.call(
        "POST", f"/schools/{school.school_id}/invitations", school.admin_token
    )
    assert status == 202, body
    assert body["status"] in ("running", "done")
    assert headers["Location"] == f"/invitation-launches/{body['launch_id']}"
    done = await launch_done(identity, school, headers["Location"])
    assert (done["total"], done["invited"], done["skipped"]) == (8, 8, 0)
    assert done["finished_at"] is not None
    for email in emails:
        await identity.code_for(email)

    # A second launch invites nobody again; a guardian added afterwards is invited at once.
    again = await launch(identity, school)
    assert again["launch_id"] != done["launch_id"]
    assert (again["total"], again["invited"], again["skipped"]) == (8, 0, 8)
    late = new_email("ouder")
    await add_child(identity, school, "Groep 2", late)
    await identity.code_for(late)
    await asyncio.sleep(0.5)
    assert all(len(identity.invitations_to(e)) == 1 for e in [*emails, late])
    assert identity.invitations_to(unplaced) == []


async def test_two_launches_at_once_invite_each_guardian_once(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launches, "BATCH", 2)
    school = await make_school(identity, "Groep 4")
    emails = [new_email("ouder") for _ in range(15)]
    for email in emails:
        await add_child(identity, school, "Groep 4", email)
    path = f"/schools/{school.school_id}/invitations"
    answers = await asyncio.gather(*(identity.call("POST", path, school.admin_token) for _ in range(3)))
    assert [status for status, _, _ in answers] == [202] * 3
    # All three answer the one running launch (a later one may find it done and start a new one).
    ids = {body["launch_id"] for _, body, _ in answers}
    # A second worker on the same launch, as when the resume job meets a slow replica.
    for launch_id in ids:
        await launches.work_off(identity.pool, uuid.UUID(launch_id))
    finished = [await launch_done(identity, school, f"/invitation-launches/{i}") for i in ids]
    assert sum(f["invited"] for f in finished) == 15
    for email in emails:
        await identity.code_for(email)
    await asyncio.sleep(0.5)
    assert all(len(identity.invitations_to(e)) == 1 for e in emails)
    async with identity.pool.acquire() as conn:
        per_guardian = await conn.fetch(
            """SELECT count(*) FROM access_codes ac JOIN guardianships gs USING (guardianship_id)
               WHERE gs.school_id = $1 GROUP BY gs.guardianship_id""",
            school.school_id,
        )
    assert [r["count"] for r in per_guardian] == [1] * 15


async def test_a_launch_whose_worker_stopped_is_finished_by_the_resume_job(identity: Identity) -> None:
    school = await make_school(identity, "Groep 5")
    emails = [new_email("ouder") for _ in range(3)]
    for email in emails:
        await add_child(identity, school, "Groep 5", email)
    # Started as the request would, but its replica stopped before any batch ran.
    async with identity.pool.acquire() as conn, conn.transaction():
        started = await launches.start(conn, school.school_id)
        await conn.execute(
            "UPDATE invitation_launches SET updated_at = now() - interval '1 minute' WHERE launch_id = $1",
            started["launch_id"],
        )
    assert await launches.resume_stalled(identity.pool) >= 1
    done = await launch_done(identity, school, f"/invitation-launches/{started['launch_id']}")
    assert (done["total"], done["invited"]) == (3, 3)
    for email in emails:
        await identity.code_for(email)


async def test_a_guardian_committed_behind_the_launchs_cursor_is_still_invited(identity: Identity) -> None:
    school = await make_school(identity, "Groep 6")
    emails = [new_email("ouder") for _ in range(2)]
    for email in emails:
        await add_child(identity, school, "Groep 6", email)
    late_child = await add_child(identity, school, "Groep 6")
    async with identity.pool.acquire() as conn, conn.transaction():
        started = await launches.start(conn, school.school_id)
    async with identity.pool.acquire() as conn, conn.transaction():
        assert await launches.run_batch(conn, started["launch_id"])
    # As from a transaction that began before the launch: created earlier, with an id the cursor passed.
    late = new_email("laat")
    async with identity.pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO guardianships (guardianship_id, child_id, school_id, email, created_at)
               VALUES ('00000000-0000-4000-8000-000000000001', $1, $2, $3, now() - interval '1 minute')""",
            uuid.UUID(late_child["child_id"]),
            school.school_id,
            late,
        )
    await launches.work_off(identity.pool, started["launch_id"])
    done = await launch_done(identity, school, f"/invitation-launches/{started['launch_id']}")
    assert (done["total"], done["invited"], done["skipped"]) == (3, 3, 0)
    for email in [*emails, late]:
        await identity.code_for(email)


async def test_a_guardian_added_while_the_school_launches_is_invited_once(identity: Identity) -> None:
    school = await make_school(identity, "Groep 8")
    email = new_email("ouder")
    child_id = uuid.uuid4()
    async with identity.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # A child with a guardian added before the launch, committed only after the launch began.
            await conn.execute(
                """INSERT INTO children (child_id, school_id, given_name, family_name)
                   VALUES ($1, $2, 'Sem', 'Bakker')""",
                child_id,
                school.school_id,
            )
            await conn.execute(
                """INSERT INTO placements (child_id, school_year_id, group_id)
                   SELECT $1, school_year_id, group_id FROM groups WHERE group_id = $2""",
                child_id,
                school.groups["Groep 8"],
            )
            await conn.execute(
                """INSERT INTO guardianships (guardianship_id, child_id, school_id, email)
                   VALUES ($1, $2, $3, $4)""",
                uuid.uuid4(),
                child_id,
                school.school_id,
                email,
            )
            assert await store.invite_pending_of_child(conn, child_id) == 0  # not launched yet
            launching = asyncio.create_task(
                identity.call("POST", f"/schools/{school.school_id}/invitations", school.admin_token)
            )
            await asyncio.sleep(0.5)
            assert not launching.done()  # the launch waits for the school row
        finally:
            await tx.commit()
    status, body, headers = await launching
    assert status == 202, body
    done = await launch_done(identity, school, headers["Location"])
    assert done["invited"] == 1
    await identity.code_for(email)
    await asyncio.sleep(0.5)
    assert len(identity.invitations_to(email)) == 1


async def test_a_launch_is_seen_only_by_its_schools_admins(identity: Identity) -> None:
    school = await make_school(identity)
    done = await launch(identity, school)
    other = await make_school(identity)
    status, body, _ = await identity.call(
        "GET", f"/invitation-launches/{done['launch_id']}", other.admin_token
    )
    assert status == 404, body
    status, body, _ = await identity.call(
        "POST", f"/schools/{school.school_id}/invitations", other.admin_token
    )
    assert status == 404, body


# Reminders.


async def run_reminders(identity: Identity) -> int:
    async with identity.pool.acquire() as conn, conn.transaction():
        return await reminders.send_due_reminders(conn)


async def age_all_mails(identity: Identity, school: SchoolAlone, days: float) -> None:
    async with identity.pool.acquire() as conn:
        await conn.execute(
            """UPDATE access_codes ac SET last_sent_at = last_sent_at - $2 * interval '1 day'
               FROM guardianships gs WHERE gs.guardianship_id = ac.guardianship_id AND gs.school_id = $1""",
            school.school_id,
            days,
        )


async def test_reminders_go_out_once_per_interval_and_stop_at_the_maximum(identity: Identity) -> None:
    school = await make_school(identity, "Groep 6", reminder_days=7, max_reminders=2)
    email = new_email("ouder")
    await add_child(identity, school, "Groep 6", email)
    await launch(identity, school)
    first = await identity.code_for(email)

    assert await run_reminders(identity) == 0  # not due yet
    await age_all_mails(identity, school, 6.9)
    assert await run_reminders(identity) == 0
    await age_all_mails(identity, school, 0.2)
    assert await run_reminders(identity) == 1
    assert await run_reminders(identity) == 0  # once per interval
    second = await identity.code_for(email, 2)
    assert identity.invitations_to(email)[1]["reminder"] == 1
    assert (await redeem(identity, first))[0] == 422  # the old code stops working

    # A reminder renews an expired code too.
    await age_all_mails(identity, school, 8)
    await move_back(identity, "expires_at", identity.invitations_to(email)[1]["invitation_id"], 30)
    assert await run_reminders(identity) == 1
    third = await identity.code_for(email, 3)
    assert identity.invitations_to(email)[2]["reminder"] == 2

    await age_all_mails(identity, school, 30)
    assert await run_reminders(identity) == 0  # max_reminders reached
    await asyncio.sleep(0.5)
    assert len(identity.invitations_to(email)) == 3
    assert (await redeem(identity, second))[0] == 422
    assert (await redeem(identity, third))[0] == 201


async def test_two_reminder_runs_at_once_remind_each_guardian_once(identity: Identity) -> None:
    school = await make_school(identity, "Groep 9", reminder_days=3, max_reminders=5)
    emails = [new_email("ouder") for _ in range(6)]
    for email in emails:
        await add_child(identity, school, "Groep 9", email)
    await launch(identity, school)
    await age_all_mails(identity, school, 4)
    sent = await asyncio.gather(run_reminders(identity), run_reminders(identity))
    assert sum(sent) == 6
    for email in emails:
        await identity.code_for(email, 2)
    await asyncio.sleep(0.5)
    assert [len(identity.invitations_to(e)) for e in emails] == [2] * 6


async def test_linked_guardians_children_who_left_and_unlaunched_schools_get_no_reminders(
    identity: Identity,
) -> None:
    school = await make_school(identity, "Groep 7", reminder_days=1, max_reminders=3)
    linked, left, revoked, pending = (new_email(n) for n in ("linked", "left", "revoked", "pending"))
    await add_child(identity, school, "Groep 7", linked)
    leaving = await add_child(identity, school, "Groep 7", left)
    withdrawn = await add_child(identity, school, "Groep 7", revoked)
    await add_child(identity, school, "Groep 7", pending)
    await launch(identity, school)
    assert (await redeem(identity, await identity.code_for(linked)))[0] == 201
    assert (
        await identity.call("POST", f"/children/{leaving['child_id']}/leave", school.admin_token, json={})
    )[0] == 200
    guardianship = withdrawn["guardians"][0]["guardianship_id"]
    assert (await identity.call("DELETE", f"/guardianships/{guardianship}/invitation", school.admin_token))[
        0
    ] == 204

    unlaunched = await make_school(identity, "Groep 8", reminder_days=1, max_reminders=3)
    resent = new_email("resent")
    child = await add_child(identity, unlaunched, "Groep 8", resent)
    status, _, _ = await identity.call(
        "POST",
        f"/guardianships/{child['guardians'][0]['guardianship_id']}/invitation",
        unlaunched.admin_token,
    )
    assert status == 201
    await identity.code_for(resent)

    for s in (school, unlaunched):
        await age_all_mails(identity, s, 2)
    await run_reminders(identity)
    await identity.code_for(pending, 2)
    await asyncio.sleep(0.5)
    assert [len(identity.invitations_to(e)) for e in (linked, left, revoked, resent)] == [1, 1, 1, 1]
