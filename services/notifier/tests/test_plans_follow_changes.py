"""What is planned for a parent follows what changes after the plan, through a running notifier
(issue 8, "Preferences"):

- the channel ``auto`` is read by one rule everywhere (preferences.channels_for): switching from email
  to ``auto`` with a device drops the emails held for the digest, as the plan and the unsubscribe
  page read ``auto`` (found: they stayed and came in the evening's digest);
- pushes held for quiet hours are planned again when the parent changes or drops their quiet hours
  (found: they kept the old end), and a push for a later moment keeps that moment;
- the day-before reminder is held until the first instant the school's clocks show its time, in the
  deployment's DEFAULT_TIME_ZONE for a school the notifier does not know yet (found: a hard-coded
  zone beside the setting the schedule and the mails use);
- a parent whose account reaches the notifier after a message to their group still gets it (found:
  skipped for good).
"""

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from notifier import events, message_store, unsubscribe
from notifier.app import spec
from notifier.preferences import Choice, QuietHours
from shared.app import create_app
from shared.contracts import AccountChanged, MembershipGranted, MembershipRevoked, PostDeleted, SlotBooked
from shared.envelope import envelope
from shared.testing.infra import free_port

from .conftest import eventually
from .test_preferences import Klas, Parent, Site, a_class, choose, post, pushes, site

__all__ = ["site"]  # the fixture, a notifier of this module's own

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NIGHT = QuietHours(time(21, 0), time(7, 0))


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in January 2027 on Amsterdam's clocks (ahead of the tests' real clock: the notifier's
    own schedule job never releases what these tests hold)."""
    return datetime(2027, 1, day, hour, minute, tzinfo=AMSTERDAM)


async def _true(value: bool) -> bool:
    return value


# --- auto is one rule ----------------------------------------------------------------------------------


async def _held_digest_email(site: Site, klas: Klas, parent: Parent) -> uuid.UUID:
    await choose(site, parent, "email", "digest")
    post_id = await post(site, klas, "Voor de samenvatting")

    async def held() -> bool:
        return bool(
            await site.pool.fetchval(
                """SELECT count(*) FROM deliveries d JOIN notifications n USING (notification_id)
                   WHERE n.post_id = $1 AND d.status = 'held' AND d.hold_reason = 'digest'""",
                post_id,
            )
        )

    await eventually(held, what="the email held for the digest")
    return post_id


async def _email_of(site: Site, post_id: uuid.UUID) -> tuple[str, str | None]:
    row = await site.pool.fetchrow(
        """SELECT d.status, d.last_error FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE n.post_id = $1 AND d.channel = 'email'""",
        post_id,
    )
    assert row is not None
    return row["status"], row["last_error"]


@pytest.mark.parametrize(("device", "kept"), [(True, False), (False, True)])
async def test_switching_from_email_to_auto_drops_the_digest_email_only_for_a_parent_with_a_device(
    site: Site, device: bool, kept: bool
) -> None:
    klas = await a_class(site, 1, devices=device)
    [parent] = klas.parents
    post_id = await _held_digest_email(site, klas, parent)
    await choose(site, parent, "auto")
    status = await _email_of(site, post_id)
    # With a device auto is push only, as the plan and the unsubscribe page read it; without, email.
    assert status == (("held", None) if kept else ("failed", "cancelled: email turned off"))
    async with site.pool.acquire() as conn:
        assert await unsubscribe.email_is_off(conn, parent.person_id, "posts") is not kept


# --- held pushes follow the quiet hours ----------------------------------------------------------------


async def _push(
    site: Site,
    quiet: QuietHours | None,
    now: datetime,
    send_at: datetime | None = None,
) -> tuple[Parent, uuid.UUID]:
    """A parent with one device, push for everything and these quiet hours; a message fanned out to
    them at ``now`` (for ``send_at``, a day-before reminder): the parent and the push's delivery."""
    klas = await a_class(site, 1)
    [parent] = klas.parents
    await choose(site, parent, "push", quiet=quiet)
    notification_id = uuid.uuid4()
    kind = "day_before" if send_at else "new_post"
    async with site.pool.acquire() as conn, conn.transaction():
        await message_store.create_notification(
            conn, notification_id, kind, school_id=klas.school_id, group_id=klas.group_id,
            post_id=None if send_at else uuid.uuid4(), excerpt="Morgen gym",
        )  # fmt: skip
        await message_store.fan_out(
            conn, notification_id, [parent.person_id], "reminders" if send_at else "posts",
            school_id=klas.school_id, default_zone="Europe/Amsterdam", now=now,
            send_at={parent.person_id: send_at} if send_at else None,
        )  # fmt: skip
    delivery_id = await site.pool.fetchval(
        "SELECT delivery_id FROM deliveries WHERE notification_id = $1 AND channel = 'push'", notification_id
    )
    return parent, delivery_id


async def _plan_of(site: Site, delivery_id: uuid.UUID) -> tuple[str, str | None, datetime | None]:
    row = await site.pool.fetchrow(
        "SELECT status, hold_reason, hold_until FROM deliveries WHERE delivery_id = $1", delivery_id
    )
    assert row is not None
    held = row["status"] == "held"
    return row["status"], row["hold_reason"] if held else None, row["hold_until"] if held else None


async def _change_quiet_hours(site: Site, parent: Parent, quiet: QuietHours | None, now: datetime) -> None:
    async with site.pool.acquire() as conn:
        await message_store.save_preferences(
            conn,
            parent.person_id,
            {c: Choice("push") for c in ("posts", "signups", "reminders")},
            quiet,
            now=now,
        )


@pytest.mark.parametrize(
    ("new", "plan"),
    [
        (None, ("pending", None, None)),  # no quiet hours any more: now
        (QuietHours(time(22, 0), time(6, 0)), ("held", "quiet_hours", local(13, 6))),  # the new end
        (QuietHours(time(21, 0), time(8, 30)), ("held", "quiet_hours", local(13, 8, 30))),  # later
        (QuietHours(time(23, 45), time(7, 0)), ("pending", None, None)),  # 23:30 is outside now
        (QuietHours(time(6, 0), time(8, 0)), ("pending", None, None)),  # other hours altogether
    ],
)
async def test_a_held_push_follows_the_parents_new_quiet_hours(
    site: Site, new: QuietHours | None, plan: tuple[str, str | None, datetime | None]
) -> None:
    parent, delivery_id = await _push(site, NIGHT, local(12, 23, 0))
    assert await _plan_of(site, delivery_id) == ("held", "quiet_hours", local(13, 7))
    await _change_quiet_hours(site, parent, new, local(12, 23, 30))
    status, reason, until = await _plan_of(site, delivery_id)
    if plan[0] == "pending":  # released: the sender takes it at once
        assert status in ("pending", "sent"), status
        await eventually(lambda: _true(len(pushes(site, parent)) == 1), what="the released push")
    else:
        assert (status, reason, until) == plan


async def test_a_push_for_a_later_moment_keeps_that_moment_whatever_the_quiet_hours_become(
    site: Site,
) -> None:
    reminder_at = local(13, 9)
    parent, delivery_id = await _push(site, QuietHours(time(8, 0), time(10, 0)), local(12, 15), reminder_at)
    assert await _plan_of(site, delivery_id) == ("held", "quiet_hours", local(13, 10))
    # Quiet hours dropped: held until its moment, not released at once (the reminder is for 09:00).
    await _change_quiet_hours(site, parent, None, local(12, 16))
    assert await _plan_of(site, delivery_id) == ("held", "scheduled", reminder_at)
    # Quiet hours that take in its moment again hold it past them.
    await _change_quiet_hours(site, parent, QuietHours(time(8, 30), time(9, 30)), local(12, 17))
    assert await _plan_of(site, delivery_id) == ("held", "quiet_hours", local(13, 9, 30))
    assert pushes(site, parent) == []


# --- the day-before reminder: the school's clocks, one default zone ------------------------------------


def _booking(school_id: uuid.UUID, guardian: uuid.UUID, starts: datetime) -> SlotBooked:
    return SlotBooked(
        booking_id=uuid.uuid4(), schedule_id=uuid.uuid4(), school_id=school_id, group_id=uuid.uuid4(),
        child_id=uuid.uuid4(), child_name="Sam", title="10-minutengesprek", starts_at=starts,
        ends_at=starts + timedelta(minutes=10), guardian_ids=[guardian], booked_by=guardian,
    )  # fmt: skip


async def _reminder_at(site: Site, event: SlotBooked) -> datetime:
    env = envelope(event, event.school_id, "test-day-before")
    handler = events.handlers.by_type[env.type]
    async with site.pool.acquire() as conn, conn.transaction():
        await handler.run(conn, env, event)
    moment: datetime = await site.pool.fetchval(
        """SELECT d.hold_until FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE n.kind = 'day_before' AND n.context->>'booking_id' = $1 AND d.channel = 'email'""",
        str(event.booking_id),
    )
    return moment


async def test_the_day_before_reminder_is_held_until_the_schools_clocks_first_show_its_time(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 09:00 no zone's clocks skip or repeat (every IANA zone, 2024-2027); at 02:30 Amsterdam's do
    # on 28 March 2027: the reminder goes when the clocks pass 02:30 (03:00 summer time, 01:00 UTC),
    # not at 03:30 as a wall time with the zone attached reads it.
    monkeypatch.setattr(events, "DAY_BEFORE_AT", time(2, 30))
    klas = await a_class(site, 1, devices=False)
    starts = datetime(2027, 3, 29, 15, 0, tzinfo=AMSTERDAM)
    reminder = await _reminder_at(site, _booking(klas.school_id, klas.parents[0].person_id, starts))
    assert reminder == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)


async def test_a_school_not_known_yet_is_read_in_the_deployments_default_zone(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handlers read DEFAULT_TIME_ZONE as the schedule and the mails do: a notifier configured for
    Tokyo reminds at 09:00 Tokyo the day before, for a school whose SchoolChanged has not come yet."""
    monkeypatch.setattr(message_store, "DEFAULT_ZONE", message_store.DEFAULT_ZONE)  # put back afterwards
    tokyo = site.settings.model_copy(update={"default_time_zone": "Asia/Tokyo", "http_port": free_port()})
    runner = web.AppRunner(create_app(spec(), tokyo), access_log=None)
    await runner.setup()  # a second replica of the notifier, on the same database and broker
    try:
        assert message_store.DEFAULT_ZONE == "Asia/Tokyo"
        klas = await a_class(site, 1, devices=False)
        unknown_school = uuid.uuid4()
        starts = datetime(2027, 5, 20, 15, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
        reminder = await _reminder_at(site, _booking(unknown_school, klas.parents[0].person_id, starts))
        assert reminder == datetime(2027, 5, 19, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    finally:
        await runner.cleanup()


# --- a parent whose account arrives after the message ----------------------------------------------------


async def _member_without_account(site: Site, klas: Klas, device: bool) -> Parent:
    """A guardian of the class whose membership (and device) the notifier has, not yet their account."""
    person = uuid.uuid4()
    await site.publish(
        MembershipGranted(group_id=klas.group_id, person_id=person, role="guardian", revision=1, children=[]),
        klas.school_id,
    )
    subscription: dict[str, Any] | None = None
    if device:
        subscription = site.push.subscribe(site.settings.vapid_public_key or "")
        await site.pool.execute(
            "INSERT INTO devices (device_id, person_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(), person, subscription["endpoint"], subscription["keys"]["p256dh"],
            subscription["keys"]["auth"],
        )  # fmt: skip

    async def member() -> bool:
        return bool(
            await site.pool.fetchval(
                "SELECT count(*) FROM memberships WHERE group_id = $1 AND person_id = $2 AND active",
                klas.group_id,
                person,
            )
        )

    await eventually(member, what="the membership in the notifier's copy")
    return Parent(person, f"laat-{person.hex[:8]}@ouders.test", subscription)


async def _owed(site: Site, person_id: uuid.UUID) -> int:
    return int(
        await site.pool.fetchval("SELECT count(*) FROM awaiting_account WHERE person_id = $1", person_id)
    )


@pytest.mark.parametrize("device", [True, False])
async def test_a_parent_whose_account_arrives_after_the_post_still_hears_of_it(
    site: Site, device: bool
) -> None:
    klas = await a_class(site, 1, devices=False)
    late = await _member_without_account(site, klas, device)
    kept = await post(site, klas, "Morgen schoolreis")
    deleted = await post(site, klas, "Wordt verwijderd")
    await site.publish(PostDeleted(post_id=deleted, group_id=klas.group_id), klas.school_id)
    await eventually(lambda: _owed_is(site, late.person_id, 1), what="the deleted post no longer owed")

    await site.publish(
        AccountChanged(
            person_id=late.person_id, email=late.email, display_name="Laat", locale="nl", revision=1
        )
    )
    await eventually(lambda: _owed_is(site, late.person_id, 0), what="the account handled")
    await site.settle()
    if device:  # auto with a device: a push, as for everyone else
        await eventually(lambda: _true(len(pushes(site, late)) == 1), what="the owed push")
        assert pushes(site, late)[0]["url"].endswith(str(kept))
        assert site.mails_to(late.email) == []
    else:
        await eventually(lambda: _true(len(site.mails_to(late.email)) == 1), what="the owed email")
        assert "Morgen schoolreis" in site.mails_to(late.email)[0].text


async def test_a_parent_who_left_the_group_before_their_account_arrived_is_not_told(site: Site) -> None:
    klas = await a_class(site, 1, devices=False)
    late = await _member_without_account(site, klas, device=False)
    await post(site, klas, "Alleen voor de groep")
    await eventually(lambda: _owed_is(site, late.person_id, 1), what="the post owed")
    await site.publish(
        MembershipRevoked(group_id=klas.group_id, person_id=late.person_id, role="guardian", revision=2),
        klas.school_id,
    )

    async def revoked() -> bool:
        return not await site.pool.fetchval(
            "SELECT active FROM memberships WHERE group_id = $1 AND person_id = $2",
            klas.group_id,
            late.person_id,
        )

    await eventually(revoked, what="the revocation in the copy")
    await site.publish(
        AccountChanged(
            person_id=late.person_id, email=late.email, display_name="Laat", locale="nl", revision=1
        )
    )
    await eventually(lambda: _owed_is(site, late.person_id, 0), what="the account handled")
    await site.settle()
    assert not await site.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE person_id = $1", late.person_id
    )


async def _owed_is(site: Site, person_id: uuid.UUID, count: int) -> bool:
    return await _owed(site, person_id) == count
