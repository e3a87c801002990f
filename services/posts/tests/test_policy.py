"""The posting policy (seed rule 5): at most N posts per group per calendar day in the school's time
zone. The local day at fixed instants around midnight and the daylight-saving changes of
Europe/Amsterdam; the endpoint's refusal, around midnight (a send-later post counts for the day it
appears), and under 20 concurrent attempts."""

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from posts.publishing import store
from posts.publishing.api import admit
from posts.publishing.domain import local_day, next_local_midnight
from shared.app import POOL
from shared.errors import Conflict
from tests.harness.school import Person, make_class
from tests.harness.system import System, eventually

AMS = "Europe/Amsterdam"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        # Winter (UTC+1): the local day ends at 23:00 UTC.
        ("2026-12-01T22:59:59", "2026-12-01"),
        ("2026-12-01T23:00:00", "2026-12-02"),
        # Summer (UTC+2): at 22:00 UTC.
        ("2026-06-30T21:59:59", "2026-06-30"),
        ("2026-06-30T22:00:00", "2026-07-01"),
        # 29 March 2026, clocks 02:00 -> 03:00 at 01:00 UTC: a day of 23 hours, 23:00 to 22:00 UTC.
        ("2026-03-28T22:59:59", "2026-03-28"),
        ("2026-03-28T23:00:00", "2026-03-29"),
        ("2026-03-29T00:59:59", "2026-03-29"),
        ("2026-03-29T01:00:00", "2026-03-29"),
        ("2026-03-29T21:59:59", "2026-03-29"),
        ("2026-03-29T22:00:00", "2026-03-30"),
        # 25 October 2026, clocks 03:00 -> 02:00 at 01:00 UTC: a day of 25 hours, 22:00 to 23:00 UTC.
        ("2026-10-24T21:59:59", "2026-10-24"),
        ("2026-10-24T22:00:00", "2026-10-25"),
        ("2026-10-25T00:30:00", "2026-10-25"),
        ("2026-10-25T01:30:00", "2026-10-25"),
        ("2026-10-25T22:59:59", "2026-10-25"),
        ("2026-10-25T23:00:00", "2026-10-26"),
    ],
)
def test_the_local_day_follows_amsterdam_across_midnight_and_daylight_saving(instant: str, day: str) -> None:
    assert local_day(utc(instant), AMS) == date.fromisoformat(day)


def test_the_next_post_is_possible_from_the_next_local_midnight() -> None:
    cases = {
        date(2026, 12, 1): "2026-12-02T00:00:00+01:00",
        date(2026, 3, 28): "2026-03-29T00:00:00+01:00",  # before the spring change
        date(2026, 3, 29): "2026-03-30T00:00:00+02:00",  # the 23-hour day ends in summer time
        date(2026, 10, 25): "2026-10-26T00:00:00+01:00",  # the 25-hour day ends in winter time
    }
    for day, expected in cases.items():
        midnight = next_local_midnight(day, AMS)
        assert midnight.isoformat() == expected, day
        assert local_day(midnight, AMS) == day + timedelta(days=1)
        assert local_day(midnight - timedelta(microseconds=1), AMS) == day


def test_the_local_day_agrees_with_the_zone_in_other_schools() -> None:
    # Same instant, three schools: the day a post counts for is each school's own.
    instant = utc("2026-12-01T23:30:00")
    assert local_day(instant, "Europe/Amsterdam") == date(2026, 12, 2)
    assert local_day(instant, "Europe/London") == date(2026, 12, 1)
    assert local_day(instant, "America/Curacao") == date(2026, 12, 1)


async def post(system: System, person: Person, group: uuid.UUID, **fields: Any) -> tuple[int, Any]:
    body = {"title": "Gym", "body": "Morgen gym, neem je schoenen mee.", **fields}
    return await system.call("POST", "posts", f"/groups/{group}/posts", person.token, json=body)


def pool(system: System) -> asyncpg.Pool:
    return system.services["posts"].app[POOL]


async def set_time_zone(system: System, school_id: uuid.UUID, admin: Person, zone: str) -> None:
    status, body = await system.call(
        "PATCH", "identity", f"/schools/{school_id}", admin.token, json={"time_zone": zone}
    )
    assert status == 200, body

    async def copied() -> bool:
        found = await pool(system).fetchval("SELECT time_zone FROM schools WHERE school_id = $1", school_id)
        return bool(found == zone)

    await eventually(copied, what="the school's time zone copied to posts")


async def test_a_second_post_on_the_same_school_day_is_refused_saying_when_and_that_the_first_can_be_edited(
    system: System,
) -> None:
    school, group, teacher, _parent = await make_class(system, "Groep 3")
    await set_time_zone(system, school.school_id, school.admin, AMS)
    status, first = await post(system, teacher, group)
    assert status == 201, first

    status, body = await post(system, teacher, group, title="Nog iets")
    assert status == 409, body
    error = body["error"]
    assert error["code"] == "conflict"
    now = datetime.now(UTC)
    today = local_day(now, AMS)
    midnight = next_local_midnight(today, AMS)
    assert "Groep 3 already has a post today" in error["message"]
    assert f"possible from {midnight:%Y-%m-%d %H:%M} (Europe/Amsterdam)" in error["message"]
    assert "today's post can still be edited" in error["message"]
    assert error["details"] == {
        "post_id": first["post_id"],
        "day": today.isoformat(),
        "next_post_at": midnight.isoformat(),
        "max_posts_per_day": 1,
    }
    # The post it points at can indeed be edited.
    status, edited = await system.call(
        "PATCH", "posts", f"/posts/{first['post_id']}", teacher.token, json={"body": "Gym gaat niet door."}
    )
    assert status == 200, edited
    assert await pool(system).fetchval("SELECT count(*) FROM posts WHERE group_id = $1", group) == 1


async def test_the_schools_setting_allows_more_posts_a_day(system: System) -> None:
    school, group, teacher, _parent = await make_class(system, "Groep 4")
    status, body = await system.call(
        "PATCH", "identity", f"/schools/{school.school_id}", school.admin.token, json={"max_posts_per_day": 2}
    )
    assert status == 200, body

    async def copied() -> bool:
        found = await pool(system).fetchval(
            "SELECT max_posts_per_day FROM schools WHERE school_id = $1", school.school_id
        )
        return bool(found == 2)

    await eventually(copied, what="the school's policy copied to posts")
    assert (await post(system, teacher, group))[0] == 201
    assert (await post(system, teacher, group))[0] == 201
    status, body = await post(system, teacher, group)
    assert status == 409, body
    assert "already has 2 posts today" in body["error"]["message"]


def zone_with_midnight_between(now: datetime, low: timedelta, high: timedelta) -> str:
    """A time zone whose next local midnight is between ``low`` and ``high`` from now."""
    for zone in (
        "Europe/Amsterdam",
        "Pacific/Kiritimati",
        "Asia/Tokyo",
        "Asia/Kolkata",
        "Europe/Moscow",
        "America/Sao_Paulo",
        "America/New_York",
        "America/Los_Angeles",
        "Pacific/Honolulu",
        "Pacific/Pago_Pago",
    ):
        midnight = next_local_midnight(local_day(now, zone), zone)
        if low <= midnight - now <= high:
            return zone
    raise AssertionError("no zone fits")


async def test_around_local_midnight_a_send_later_post_counts_for_the_day_it_appears(system: System) -> None:
    school, group, teacher, _parent = await make_class(system, "Groep 5")
    zone = zone_with_midnight_between(datetime.now(UTC), timedelta(minutes=10), timedelta(hours=15))
    await set_time_zone(system, school.school_id, school.admin, zone)
    now = datetime.now(UTC)
    midnight = next_local_midnight(local_day(now, zone), zone)

    status, today = await post(system, teacher, group)
    assert status == 201, today
    # A minute before midnight is still today: refused, pointing at today's post.
    status, body = await post(
        system, teacher, group, publish_at=(midnight - timedelta(minutes=1)).isoformat()
    )
    assert status == 409, body
    assert body["error"]["details"]["post_id"] == today["post_id"]
    # A minute after midnight is tomorrow: accepted, scheduled.
    status, tomorrow = await post(
        system, teacher, group, publish_at=(midnight + timedelta(minutes=1)).isoformat()
    )
    assert status == 201, tomorrow
    assert tomorrow["status"] == "scheduled"
    # A second one for tomorrow is refused for tomorrow, with the midnight after it.
    status, body = await post(
        system, teacher, group, publish_at=(midnight + timedelta(minutes=2)).isoformat()
    )
    assert status == 409, body
    tomorrow_day = local_day(midnight, zone)
    assert body["error"]["details"]["day"] == tomorrow_day.isoformat()
    assert body["error"]["details"]["post_id"] == tomorrow["post_id"]
    assert body["error"]["details"]["next_post_at"] == next_local_midnight(tomorrow_day, zone).isoformat()
    assert f"on {tomorrow_day.isoformat()}" in body["error"]["message"]
    assert "that day's post can still be edited" in body["error"]["message"]

    # Deleting the scheduled post frees its day; deleting today's (already seen) post does not.
    status, _ = await system.call("DELETE", "posts", f"/posts/{tomorrow['post_id']}", teacher.token)
    assert status == 204
    status, again = await post(
        system, teacher, group, publish_at=(midnight + timedelta(minutes=3)).isoformat()
    )
    assert status == 201, again
    status, _ = await system.call("DELETE", "posts", f"/posts/{today['post_id']}", teacher.token)
    assert status == 204
    status, body = await post(system, teacher, group)
    assert status == 409, body
    assert body["error"]["details"]["post_id"] is None


@pytest.mark.parametrize(
    ("first", "second", "refused"),
    [
        # Spring change day: 00:30 and 23:30 local are on different UTC dates, one school day.
        ("2026-03-28T23:30:00", "2026-03-29T21:30:00", True),
        ("2026-03-28T23:30:00", "2026-03-29T22:00:00", False),  # 00:00 on the 30th
        ("2026-03-28T22:59:00", "2026-03-28T23:00:00", False),  # 23:59 on the 28th, then midnight
        # Autumn change day: 25 hours, both 02:30s (summer and winter time) are one day.
        ("2026-10-24T22:30:00", "2026-10-25T22:30:00", True),
        ("2026-10-25T00:30:00", "2026-10-25T01:30:00", True),
        ("2026-10-24T22:30:00", "2026-10-25T23:00:00", False),  # 00:00 on the 26th
    ],
)
async def test_the_day_counted_in_the_database_follows_amsterdam_on_daylight_saving_days(
    system: System, first: str, second: str, refused: bool
) -> None:
    school, group, _teacher, _parent = await make_class(system, "Groep 6")
    await set_time_zone(system, school.school_id, school.admin, AMS)
    async with pool(system).acquire() as conn:
        row = await store.writer(conn, group, uuid.uuid4())
        tx = conn.transaction()
        await tx.start()
        try:
            await admit(conn, row, utc(first), utc(first))
            if refused:
                with pytest.raises(Conflict) as refusal:
                    await admit(conn, row, utc(second), utc(second))
                day = local_day(utc(second), AMS)
                assert refusal.value.details["day"] == day.isoformat()
                assert refusal.value.details["next_post_at"] == next_local_midnight(day, AMS).isoformat()
            else:
                await admit(conn, row, utc(second), utc(second))
        finally:
            await tx.rollback()


async def test_twenty_teachers_posting_at_once_exactly_one_succeeds(system: System) -> None:
    _school, group, teacher, _parent = await make_class(system, "Groep 7")
    results = await asyncio.gather(*(post(system, teacher, group, title=f"Bericht {i}") for i in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 19, results
    winner = next(body for status, body in results if status == 201)
    for status, body in results:
        if status == 409:
            assert body["error"]["details"]["post_id"] == winner["post_id"]
    assert await pool(system).fetchval("SELECT count(*) FROM posts WHERE group_id = $1", group) == 1
    assert await pool(system).fetchval("SELECT sum(posts) FROM post_days WHERE group_id = $1", group) == 1
    published = await pool(system).fetchval(
        """SELECT count(*) FROM outbox WHERE routing_key = 'posts.post_published'
           AND envelope->'payload'->>'group_id' = $1""",
        str(group),
    )
    assert published == 1


async def test_the_zone_database_and_postgresql_agree_on_the_local_day(system: System) -> None:
    # The policy computes the day in Python; reports and jobs may compute it in SQL (AT TIME ZONE).
    instants = [utc(t) for t in ("2026-03-28T23:00:00", "2026-03-29T21:59:59", "2026-10-25T22:59:59")]
    for instant in instants:
        in_sql = await pool(system).fetchval("SELECT ($1::timestamptz AT TIME ZONE $2)::date", instant, AMS)
        assert in_sql == local_day(instant, AMS) == instant.astimezone(ZoneInfo(AMS)).date()
