"""A child's erasure (identity's ChildErased, GDPR art. 17): the notifier cancels the day-before
reminder and the booking reminder still held or pending about the child, and the invitation mails
(and reminders) about the child not sent yet, blanks the child's name in every notice and invitation
mail about them (sent ones too) and drops the child from the guardians' memberships copy; another
child's notices, mails and membership stay as they were."""

import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.erasure import CANCELLED
from notifier.events import handlers
from shared.app import POOL
from shared.contracts import (
    AccountChanged,
    BookingReminderDue,
    ChildErased,
    GroupChanged,
    InvitationIssued,
    MembershipGranted,
    SchoolChanged,
    SlotBooked,
)
from shared.envelope import Event, envelope

from .conftest import RunningNotifier
from .test_delivery_outage import notifier_without_smtp
from .test_mails import a_code, an_address, an_invitation

ZONE = ZoneInfo("Europe/Amsterdam")


async def test_an_erased_child_is_forgotten_and_its_reminders_cancelled(notifier: RunningNotifier) -> None:
    school_id, group_id, guardian = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    erased, sibling = uuid.uuid4(), uuid.uuid4()
    await notifier.publish(
        SchoolChanged(
            school_id=school_id, name="De Regenboog", time_zone="Europe/Amsterdam", max_posts_per_day=5,
            min_posts_per_week=1, digest_time="18:00", photo_retention_days=365, share_notice="", revision=1,
        ),
        school_id,
    )  # fmt: skip
    await notifier.publish(
        GroupChanged(
            group_id=group_id, school_id=school_id, name="Groep 5", school_year="2026-2027", revision=1
        ),
        school_id,
    )
    address = f"ouder-{uuid.uuid4().hex[:8]}@ouders.test"
    await notifier.publish(
        AccountChanged(person_id=guardian, email=address, display_name="Ouder", locale="nl", revision=1)
    )
    await notifier.publish(
        MembershipGranted(
            group_id=group_id, person_id=guardian, role="guardian", revision=1, children=[erased, sibling]
        ),
        school_id,
    )
    starts = datetime.combine(datetime.now(ZONE).date() + timedelta(days=5), time(15, 30), tzinfo=ZONE)
    bookings = {erased: uuid.uuid4(), sibling: uuid.uuid4()}
    for child, name in ((erased, "Noa"), (sibling, "Sam")):
        await notifier.publish(
            SlotBooked(
                booking_id=bookings[child], schedule_id=uuid.uuid4(), school_id=school_id, group_id=group_id,
                child_id=child, child_name=name, title="10-minutengesprek", teacher_names=["Juf Anne"],
                location="Lokaal 3", guardian_ids=[guardian], starts_at=starts,
                ends_at=starts + timedelta(minutes=10), booked_by=guardian,
            ),
            school_id,
        )  # fmt: skip
        await notifier.publish(
            BookingReminderDue(
                schedule_id=uuid.uuid4(), school_id=school_id, child_id=child, child_name=name,
                title="Rapportgesprek", closes_at=starts, guardian_ids=[guardian],
            ),
            school_id,
        )  # fmt: skip

    pool = notifier.pool
    notices = """SELECT n.kind, n.context->>'child_name' AS child_name, d.status, d.last_error
                 FROM notifications n JOIN deliveries d USING (notification_id)
                 WHERE n.school_id = $1 AND n.context->>'child_id' = $2"""

    async def stored() -> bool:
        # Per child: the confirmation, the day-before reminder (held) and the booking reminder.
        counts = [len(await pool.fetch(notices, school_id, str(child))) for child in (erased, sibling)]
        return counts == [3, 3]

    await notifier.eventually(stored, "the notices about both children")
    held = await pool.fetch(notices, school_id, str(erased))
    assert {(r["kind"], r["status"]) for r in held if r["kind"] == "day_before"} == {("day_before", "held")}

    await notifier.publish(ChildErased(child_id=erased, school_id=school_id), school_id)

    async def forgotten() -> bool:
        rows = await pool.fetch(notices, school_id, str(erased))
        return all(r["child_name"] == "" for r in rows)

    await notifier.eventually(forgotten, "the erased child's name gone from its notices")
    rows = await pool.fetch(notices, school_id, str(erased))
    # Nothing about the erased child is still to be sent; what went out before stays as history.
    assert not [r for r in rows if r["status"] in ("pending", "held")], rows
    reminder = [r for r in rows if r["kind"] == "day_before"]
    assert [(r["status"], r["last_error"]) for r in reminder] == [
        ("failed", "cancelled: the child's data was erased")
    ]
    # No stored row of the notifier names the child any more.
    assert not await pool.fetchval("SELECT count(*) FROM notifications WHERE context::text LIKE '%Noa%'")
    assert not await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE coalesce(last_error, '') LIKE '%Noa%'"
    )
    children = await pool.fetchval(
        "SELECT children FROM memberships WHERE group_id = $1 AND person_id = $2", group_id, guardian
    )
    assert children == [sibling]
    # The sibling's notices are untouched: still named, none cancelled, the reminder still held.
    kept = await pool.fetch(notices, school_id, str(sibling))
    assert sorted((r["kind"], r["child_name"]) for r in kept) == [
        ("booking_reminder", "Sam"),
        ("day_before", "Sam"),
        ("slot_booked", "Sam"),
    ]
    assert not [r for r in kept if r["status"] == "failed"], kept
    assert [r["status"] for r in kept if r["kind"] == "day_before"] == ["held"]


async def test_an_erased_childs_invitation_mails_lose_its_name_sent_or_not(notifier: RunningNotifier) -> None:
    school_id, erased, sibling = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sent = {}
    for child, name, reminder in (
        (erased, "Noa", 0),
        (erased, "Noa", 1),
        (sibling, "Sam", 0),
        (None, "Lot", 0),
    ):
        event = an_invitation(
            an_address(), a_code(), school_id=school_id, child_id=child, child_name=name, reminder=reminder
        )
        env = envelope(event, school_id, "test-erasure")
        if child is None:
            del env.payload["child_id"]  # as identity published it before the field existed
        await notifier.publish_envelope(env)
        await notifier.mail_status(env.event_id, "sent")
        sent[(child, reminder)] = env.event_id
    # Another school's mail from before the field existed names a child of its own.
    other = await notifier.publish(an_invitation(an_address(), a_code(), child_name="Bo"), uuid.uuid4())
    await notifier.mail_status(other.event_id, "sent")

    await notifier.publish(ChildErased(child_id=erased, school_id=school_id), school_id)

    async def name_of(mail_id: uuid.UUID) -> str:
        return str((await notifier.mail_row(mail_id))["context"]["child_name"])

    async def forgotten() -> bool:
        return await name_of(sent[(erased, 0)]) == "" and await name_of(sent[(erased, 1)]) == ""

    await notifier.eventually(forgotten, "the erased child's name gone from its invitation mails")
    assert not await notifier.pool.fetchval("SELECT count(*) FROM mails WHERE context::text LIKE '%Noa%'")
    assert {(await notifier.mail_row(m))["status"] for m in (sent[(erased, 0)], sent[(erased, 1)])} == {
        "sent"
    }
    assert await name_of(sent[(sibling, 0)]) == "Sam"
    # Sent before InvitationIssued said which child: the school's such mails are blanked too (erasure.py).
    assert await name_of(sent[(None, 0)]) == ""
    assert await name_of(other.event_id) == "Bo"


async def test_an_erased_childs_unsent_invitation_is_cancelled_without_its_code() -> None:
    # The relay is down: every invitation waits, with its code, to be sent.
    async with notifier_without_smtp() as (app, _):
        pool = app[POOL]
        school_id, erased, sibling = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

        async def handle(event: Event) -> uuid.UUID:
            env = envelope(event, school_id, "test-erasure")
            handler = handlers.by_type[env.type]
            async with pool.acquire() as conn, conn.transaction():
                await handler.run(conn, env, handler.event.model_validate(env.payload))
            return env.event_id

        def invitation(child: uuid.UUID | None, name: str, reminder: int = 0) -> InvitationIssued:
            return an_invitation(
                an_address(),
                a_code(),
                school_id=school_id,
                child_id=child,
                child_name=name,
                reminder=reminder,
            )

        noa = [await handle(invitation(erased, "Noa")), await handle(invitation(erased, "Noa", 1))]
        sam = await handle(invitation(sibling, "Sam"))
        # Published before the field existed: which child it is about is unknown, so it is sent as it is.
        lot = await handle(invitation(None, "Lot"))

        await handle(ChildErased(child_id=erased, school_id=school_id))

        mails = {
            r["mail_id"]: r
            for r in await pool.fetch(
                "SELECT mail_id, status, last_error, secret, context->>'child_name' AS child_name FROM mails"
            )
        }
        for mail_id in noa:
            assert (mails[mail_id]["status"], mails[mail_id]["last_error"]) == ("failed", CANCELLED)
            assert (mails[mail_id]["secret"], mails[mail_id]["child_name"]) == (None, "")
        for mail_id, name in ((sam, "Sam"), (lot, "Lot")):
            assert (mails[mail_id]["status"], mails[mail_id]["child_name"]) == ("pending", name)
            assert mails[mail_id]["secret"] is not None
