"""Quiet hours and the digest time on the days the school's clocks skip or repeat an hour
(Europe/Amsterdam: 02:00-03:00 skipped on 28 March 2027, repeated on 25 October 2026).

A quiet period ending at 02:30 on the day of the gap released held pushes at 03:30 summer time, an
hour late (``datetime.combine`` reads a skipped time with the offset from before the change); one
ending in the repeated hour held a push made at the second 02:15 until the first 02:30, already past.
Now a time in the gap is the first instant after it (03:00 summer time), a repeated time its first
occurrence; for the starts of quiet periods and the digest time alike. Tables across both changes,
then the same through a running notifier (fan-out, release, digest).
"""

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from notifier import message_store
from notifier.preferences import Choice, QuietHours, Recipient, plan, wall_clock_instant
from notifier.schedule import run_schedule

from .conftest import eventually
from .test_preferences import Site, a_class, choose, post, site

__all__ = ["site"]  # the fixture, a notifier of this module's own

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
SPRING = date(2027, 3, 28)  # 02:00 CET -> 03:00 CEST at 01:00 UTC
AUTUMN = date(2026, 10, 25)  # 03:00 CEST -> 02:00 CET at 01:00 UTC


def utc(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=UTC)


def night_before(day: date, hour: int, minute: int = 0) -> datetime:
    return utc(day - timedelta(days=1), hour, minute)


@pytest.mark.parametrize(
    ("day", "clock", "instant"),
    [
        (SPRING, time(1, 59), utc(SPRING, 0, 59)),  # still winter time
        (SPRING, time(2, 0), utc(SPRING, 1, 0)),  # skipped: the first instant after the gap
        (SPRING, time(2, 30), utc(SPRING, 1, 0)),  # skipped: 03:00 summer time, not 03:30
        (SPRING, time(3, 0), utc(SPRING, 1, 0)),
        (SPRING, time(3, 30), utc(SPRING, 1, 30)),
        (AUTUMN, time(1, 59), night_before(AUTUMN, 23, 59)),  # still summer time
        (AUTUMN, time(2, 0), utc(AUTUMN, 0, 0)),  # repeated: the first, summer time
        (AUTUMN, time(2, 30), utc(AUTUMN, 0, 30)),
        (AUTUMN, time(3, 0), utc(AUTUMN, 2, 0)),  # winter time
        (date(2026, 12, 1), time(7, 0), utc(date(2026, 12, 1), 6, 0)),  # an ordinary day
    ],
)
def test_a_wall_clock_time_is_the_first_instant_the_clocks_show_it(
    day: date, clock: time, instant: datetime
) -> None:
    assert wall_clock_instant(day, clock, AMSTERDAM) == instant


def test_a_whole_skipped_day_goes_to_the_first_instant_after_it() -> None:
    # Samoa skipped 30 December 2011 (UTC-10 -> UTC+14 at 10:00 UTC).
    assert wall_clock_instant(date(2011, 12, 30), time(12, 0), ZoneInfo("Pacific/Apia")) == datetime(
        2011, 12, 30, 10, 0, tzinfo=UTC
    )


ENDS_IN_THE_HOUR = QuietHours(time(22, 0), time(2, 30))
STARTS_IN_THE_HOUR = QuietHours(time(2, 30), time(6, 0))
IS_THE_HOUR = QuietHours(time(2, 0), time(3, 0))
NIGHT = QuietHours(time(21, 0), time(7, 0))


@pytest.mark.parametrize(
    ("quiet", "moment", "end"),
    [
        # The end falls in the gap: released when the clocks jump to 03:00 (01:00 UTC).
        (ENDS_IN_THE_HOUR, night_before(SPRING, 21, 30), utc(SPRING, 1, 0)),
        (ENDS_IN_THE_HOUR, utc(SPRING, 0, 59), utc(SPRING, 1, 0)),
        (ENDS_IN_THE_HOUR, utc(SPRING, 1, 0), None),  # 03:00 summer time: over
        (ENDS_IN_THE_HOUR, utc(SPRING, 1, 20), None),  # 03:20: over (was held until 03:30)
        # The end falls in the repeated hour: the first 02:30.
        (ENDS_IN_THE_HOUR, night_before(AUTUMN, 21, 0), utc(AUTUMN, 0, 30)),
        (ENDS_IN_THE_HOUR, utc(AUTUMN, 0, 15), utc(AUTUMN, 0, 30)),  # the first 02:15
        (ENDS_IN_THE_HOUR, utc(AUTUMN, 0, 45), None),  # the first 02:45
        (ENDS_IN_THE_HOUR, utc(AUTUMN, 1, 15), None),  # the second 02:15 (was held until the past)
        # The start falls in the gap: quiet from 03:00 summer time.
        (STARTS_IN_THE_HOUR, utc(SPRING, 0, 59), None),
        (STARTS_IN_THE_HOUR, utc(SPRING, 1, 0), utc(SPRING, 4, 0)),
        # The start falls in the repeated hour: quiet from the first 02:30, through the second hour.
        (STARTS_IN_THE_HOUR, utc(AUTUMN, 0, 15), None),
        (STARTS_IN_THE_HOUR, utc(AUTUMN, 0, 30), utc(AUTUMN, 5, 0)),
        (STARTS_IN_THE_HOUR, utc(AUTUMN, 1, 15), utc(AUTUMN, 5, 0)),  # the second 02:15 (was not held)
        # The whole window in the gap: no quiet hours that night; twice as long in autumn.
        (IS_THE_HOUR, utc(SPRING, 0, 59), None),
        (IS_THE_HOUR, utc(SPRING, 1, 0), None),
        (IS_THE_HOUR, utc(AUTUMN, 0, 0), utc(AUTUMN, 2, 0)),
        (IS_THE_HOUR, utc(AUTUMN, 1, 30), utc(AUTUMN, 2, 0)),
        # A window across the change ends at 07:00 on the clocks either way.
        (NIGHT, night_before(SPRING, 22, 0), utc(SPRING, 5, 0)),
        (NIGHT, night_before(AUTUMN, 22, 0), utc(AUTUMN, 6, 0)),
        (NIGHT, utc(SPRING, 4, 59), utc(SPRING, 5, 0)),
        (NIGHT, utc(AUTUMN, 5, 0), utc(AUTUMN, 6, 0)),  # 06:00 winter time
        (NIGHT, utc(AUTUMN, 6, 0), None),
    ],
)
def test_quiet_hours_start_and_end_on_the_school_s_clocks_across_both_changes(
    quiet: QuietHours, moment: datetime, end: datetime | None
) -> None:
    assert quiet.end_after(moment, AMSTERDAM) == end
    # The same moment given in the school's zone is the same instant.
    assert quiet.end_after(moment.astimezone(AMSTERDAM), AMSTERDAM) == end


def test_a_push_held_until_a_skipped_time_is_planned_for_three_o_clock() -> None:
    who = Recipient(uuid.uuid4(), Choice("push"), (uuid.uuid4(),), ENDS_IN_THE_HOUR)
    [held] = plan(who, now=night_before(SPRING, 23, 0), zone=AMSTERDAM)
    assert (held.status, held.hold_reason) == ("held", "quiet_hours")
    assert held.hold_until is not None
    assert held.hold_until.astimezone(AMSTERDAM).time() == time(3, 0)


def test_a_naive_moment_is_refused_rather_than_read_in_the_machine_s_zone() -> None:
    who = Recipient(uuid.uuid4(), Choice("push"), (uuid.uuid4(),), NIGHT)
    with pytest.raises(ValueError, match="no time zone"):
        NIGHT.end_after(datetime(2026, 12, 1, 23, 0), AMSTERDAM)
    with pytest.raises(ValueError, match="no time zone"):
        plan(who, now=datetime(2026, 12, 1, 23, 0), zone=AMSTERDAM)
    with pytest.raises(ValueError, match="no time zone"):
        plan(who, now=utc(SPRING, 1), zone=AMSTERDAM, send_at=datetime(2027, 3, 29, 9, 0))


def test_quiet_hours_that_end_when_they_start_are_refused() -> None:
    with pytest.raises(ValueError, match="another time"):
        QuietHours(time(0, 0), time(0, 0))


# --- Through a running notifier ------------------------------------------------------------------------


async def _push_row(site: Site, quiet: QuietHours, now: datetime) -> tuple[uuid.UUID, str, datetime | None]:
    """A parent with one device and these quiet hours; a post fanned out to them at ``now``: the
    push delivery's (id, status, hold_until)."""
    klas = await a_class(site, 1)
    [parent] = klas.parents
    await choose(site, parent, "push", quiet=quiet)
    notification_id = uuid.uuid4()
    async with site.pool.acquire() as conn, conn.transaction():
        await message_store.create_notification(
            conn, notification_id, "new_post", school_id=klas.school_id, group_id=klas.group_id,
            post_id=uuid.uuid4(), excerpt="Morgen gym",
        )  # fmt: skip
        await message_store.fan_out(
            conn, notification_id, [parent.person_id], "posts", school_id=klas.school_id,
            default_zone="Europe/Amsterdam", now=now,
        )  # fmt: skip
    row = await site.pool.fetchrow(
        "SELECT delivery_id, status, hold_until FROM deliveries WHERE notification_id = $1", notification_id
    )
    assert row is not None
    return row["delivery_id"], row["status"], row["hold_until"]


async def _status(site: Site, delivery_id: uuid.UUID) -> str:
    return str(await site.pool.fetchval("SELECT status FROM deliveries WHERE delivery_id = $1", delivery_id))


@pytest.mark.parametrize(
    ("quiet", "now", "release"),
    [
        (ENDS_IN_THE_HOUR, night_before(SPRING, 23, 0), utc(SPRING, 1, 0)),  # 03:00 summer time
        (ENDS_IN_THE_HOUR, night_before(AUTUMN, 22, 0), utc(AUTUMN, 0, 30)),  # the first 02:30
        (STARTS_IN_THE_HOUR, utc(AUTUMN, 1, 15), utc(AUTUMN, 5, 0)),  # made at the second 02:15
    ],
)
async def test_a_held_push_is_released_at_the_first_instant_the_quiet_hours_are_over(
    site: Site, quiet: QuietHours, now: datetime, release: datetime
) -> None:
    delivery_id, status, hold_until = await _push_row(site, quiet, now)
    assert (status, hold_until) == ("held", release)
    await site.schedule(release - timedelta(seconds=1))
    assert await _status(site, delivery_id) == "held"
    await site.schedule(release)
    assert await _status(site, delivery_id) != "held"


async def test_a_push_made_after_the_first_end_in_the_repeated_hour_is_not_held(site: Site) -> None:
    _, status, hold_until = await _push_row(site, ENDS_IN_THE_HOUR, utc(AUTUMN, 1, 15))  # the second 02:15
    assert (status, hold_until) == ("pending", None)


async def _digests(site: Site, person_id: uuid.UUID) -> list[str]:
    rows = await site.pool.fetch(
        "SELECT dedupe_key FROM notifications WHERE kind = 'digest' AND dedupe_key LIKE 'digest:' || $1 || ':%'",
        str(person_id),
    )
    return [row["dedupe_key"].rsplit(":", 1)[1] for row in rows]


@pytest.mark.parametrize(
    ("day", "due", "after_due", "next_day_due"),
    [
        # 02:30 skipped: the digest goes at 03:00 summer time (01:00 UTC), once.
        (SPRING, utc(SPRING, 1), [utc(SPRING, 1, 30), utc(SPRING, 2), utc(SPRING, 12)], utc(date(2027, 3, 29), 0, 30)),
        # 02:30 twice: at the first (00:30 UTC), and not again at the second (01:30 UTC).
        (
            AUTUMN, utc(AUTUMN, 0, 30), [utc(AUTUMN, 1), utc(AUTUMN, 1, 15), utc(AUTUMN, 1, 30), utc(AUTUMN, 12)],
            utc(date(2026, 10, 26), 1, 30),
        ),
    ],
)  # fmt: skip
async def test_a_digest_at_half_past_two_goes_once_on_the_days_the_clocks_change(
    site: Site, day: date, due: datetime, after_due: list[datetime], next_day_due: datetime
) -> None:
    klas = await a_class(site, 2, devices=False, digest_time="02:30")
    early, late = klas.parents
    for parent in klas.parents:
        await choose(site, parent, "email", "digest")
    await post(site, klas, "Morgen gymles.")
    # The early parent's email was made the evening before; the late parent's just after the digest
    # time (03:10 summer time in spring, the first 02:45 in autumn): that one is for the next day.
    await site.pool.execute(
        "UPDATE deliveries SET created_at = $2 WHERE person_id = $1", early.person_id, night_before(day, 20)
    )
    await site.pool.execute(
        "UPDATE deliveries SET created_at = $2 WHERE person_id = $1",
        late.person_id,
        due + timedelta(minutes=10),
    )
    await site.schedule(due - timedelta(seconds=1))
    assert await _digests(site, early.person_id) == []
    await site.schedule(due)
    assert await _digests(site, early.person_id) == [day.isoformat()]
    for moment in after_due:
        await site.schedule(moment)
    assert await _digests(site, early.person_id) == [day.isoformat()]
    assert await _digests(site, late.person_id) == []
    await site.schedule(next_day_due - timedelta(seconds=1))
    assert await _digests(site, late.person_id) == []
    await site.schedule(next_day_due)
    assert await _digests(site, late.person_id) == [(day + timedelta(days=1)).isoformat()]

    async def mailed() -> bool:
        return len(site.mails_to(early.email)) == 1 and len(site.mails_to(late.email)) == 1

    await eventually(mailed, what="one digest mail each")
    await site.settle()
    assert len(site.mails_to(early.email)) == 1


async def test_a_naive_clock_is_refused_by_the_schedule(site: Site) -> None:
    async with site.pool.acquire() as conn:
        with pytest.raises(ValueError, match="no time zone"):
            await run_schedule(conn, datetime(2026, 12, 1, 18, 0), "Europe/Amsterdam")
